"""Benchmark: Sentinel-2 chips/s over loopback with injected latency, against what a user would write.

Same run, same scenes, same COG file server (20 ms per request), same real pgstac STAC API:
- ours: ``fetch_chip_block`` (one search per block, SCL check + visual read per chip) at 1, 8 and 32 threads,
  and at 32 threads without the SCL check (the like-for-like comparison with (b));
- (a) naive: per cell a STAC search, the least-cloudy item, ``rioxarray.open_rasterio(href).rio.clip_box(...)``,
  sequential, default GDAL settings (what the anchors' users write);
- (b) bare: a threaded rasterio window-read loop over the same hrefs (items resolved beforehand, 32 threads,
  the same GDAL settings), i.e. the I/O floor.

Issue 15 benchmark (b): COG requests per chip WITH the SCL check (counted by the file server, headers included,
every run cold) must be <= 2.3 (the per-chip floor being one visual window + one SCL window). The dense lattice
(chips 24 px apart: neighbours share COG tiles, merged into few ranged reads) is the figure; a sparse lattice
(no tile shared between chips) is recorded beside it to show the cost when nothing can be merged.
Writes bench-results/imagery.json. Run:
  .venv/bin/python -m pytest tests/bench/test_bench_imagery.py -m bench -q -s
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.bench.benchutil import RemoteFiles, write_results

pytestmark = pytest.mark.bench

LATENCY_S = 0.02
N_CELLS = 96
N_NAIVE = 16
REPEATS = 3
WINDOW = "2020-01-01/2020-12-31"


class _Stack:
    def __init__(self, root, latency_s):
        from geoprom3e.testing.pgstac import PgStacServer
        from geoprom3e.testing.stac import build_items, collection_dict

        self.root = root
        self.files = RemoteFiles(root, latency_s)
        self.api = PgStacServer().start()
        self.collection = "sentinel-2-l2a"
        items = build_items(root, self.files.url, self.collection)
        self.api.load_collection(collection_dict(items, self.collection))
        self.api.load_items(items)
        self.stac_url = self.api.url

    def stop(self):
        self.files.stop()
        self.api.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from geoprom3e.testing.cogs import scene_lonlat, write_synthetic_scene
    from geoprom3e.testing.pgstac import pgstac_available

    reason = pgstac_available()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("bench_scenes")
    # two overlapping 3072 px (30.7 km) scenes: the least cloudy one is read, the other is a search result
    a = write_synthetic_scene(root, "BENCH_A", seed=1, cloud_cover=3.0, size_px=3072, bands=())
    write_synthetic_scene(root, "BENCH_B", seed=2, cloud_cover=9.0, size_px=3072, bands=())
    side = int(np.ceil(np.sqrt(N_CELLS)))
    pos = np.arange(side) * 280 + 256  # chips 24 px apart, all inside the scene
    cols, rows = np.meshgrid(pos, pos)
    lat, lon = scene_lonlat(a, cols.ravel()[:N_CELLS], rows.ravel()[:N_CELLS])
    stack = _Stack(root, LATENCY_S)
    try:
        yield stack, lat, lon
    finally:
        stack.stop()


def _timed(stack, fn, repeats=REPEATS):
    """Best of ``repeats`` cold runs (GDAL's HTTP cache and our COG header cache cleared before each)."""
    from geoprom3e.imagery.cog import HEADERS
    from geoprom3e.imagery.reads import clear_gdal_http_cache

    best = None
    for _ in range(repeats):
        clear_gdal_http_cache()
        HEADERS.clear()
        stack.files.reset_stats()
        t0 = time.perf_counter()
        n_ok = fn()
        dt = time.perf_counter() - t0
        st = stack.files.stats(reset=True)
        if best is None or dt < best[0]:
            best = (dt, n_ok, st)
    dt, n_ok, st = best
    return {"seconds": dt, "chips": n_ok, "chips_per_s": n_ok / dt, "file_requests": st["file_requests"],
            "file_requests_per_chip": st["file_requests"] / max(n_ok, 1)}


def _ours(stack, lat, lon, threads, scl=True):
    from geoprom3e.imagery import ImageryRequest, fetch_chip_block, open_source

    req = ImageryRequest(stac_url=stack.stac_url, collection=stack.collection, datetime=WINDOW,
                         scl_asset="SCL" if scl else None)
    src = open_source(req)
    out = {}

    def run():
        b = fetch_chip_block(req, lat, lon, source=src, threads=threads)
        out["search"] = b.stats["search_requests"]
        out["search_s"] = b.stats["search_seconds"]
        out["client_requests_per_chip"] = b.requests_per_chip
        return b.n_done

    r = _timed(stack, run)
    r["client_requests_per_chip"] = out["client_requests_per_chip"]  # ChipBlock.requests_per_chip
    r["search_requests"] = out["search"]
    r["search_seconds_last_run"] = out["search_s"]
    r["requests_per_chip"] = (r["file_requests"] + out["search"]) / max(r["chips"], 1)
    return r


def _naive(stack, lat, lon):
    """Per cell: search, least cloudy item, rioxarray open + clip_box (what a user writes first)."""
    import pystac_client
    import rioxarray  # noqa: F401  (registers .rio)

    client = pystac_client.Client.open(stack.stac_url)
    counter = {"search": 0}

    def run():
        ok = 0
        for y, x in zip(lat[:N_NAIVE], lon[:N_NAIVE]):
            items = list(client.search(collections=[stack.collection], intersects={"type": "Point",
                                       "coordinates": [float(x), float(y)]}, datetime=WINDOW,
                                       query={"eo:cloud_cover": {"lt": 20}}).items())
            counter["search"] += 1
            item = min(items, key=lambda i: i.properties["eo:cloud_cover"])
            da = rioxarray.open_rasterio(item.assets["visual"].href)
            from pyproj import Transformer

            cx, cy = Transformer.from_crs(4326, da.rio.crs, always_xy=True).transform(x, y)
            chip = da.rio.clip_box(cx - 1280, cy - 1280, cx + 1280, cy + 1280).values
            ok += chip.shape[-1] >= 256
        return ok

    r = _timed(stack, run)
    r["search_requests"] = counter["search"]
    r["requests_per_chip"] = (r["file_requests"] + counter["search"]) / max(r["chips"], 1)
    return r


def _bare(stack, lat, lon, threads=32):
    """Threaded rasterio window reads over pre-resolved hrefs (no search, no SCL, no retries): the I/O floor."""
    import rasterio

    from geoprom3e.imagery import ImageryRequest, open_source
    from geoprom3e.imagery.reads import ReadSettings, chip_window

    req = ImageryRequest(stac_url=stack.stac_url, collection=stack.collection, datetime=WINDOW)
    bbox = (float(lon.min()) - 0.05, float(lat.min()) - 0.05, float(lon.max()) + 0.05, float(lat.max()) + 0.05)
    href = open_source(req).search(bbox)[0].hrefs["visual"]
    env = ReadSettings().gdal_options()

    def one(k):
        with rasterio.Env(**env), rasterio.open(href) as ds:
            win, _ = chip_window(ds, lon[k], lat[k], 256, 10.0)
            return ds.read(window=win).shape[-1] == 256

    def run():
        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(one, range(len(lat))))

    r = _timed(stack, run)
    r["requests_per_chip"] = r["file_requests_per_chip"]
    return r


def _sparse_cells(stack):
    """16 cells 768 px apart in BENCH_A: no COG tile is shared between two chips."""
    from pathlib import Path

    from geoprom3e.testing.cogs import scene_lonlat

    pos = np.arange(4) * 768 + 256
    cols, rows = np.meshgrid(pos, pos)
    return scene_lonlat(Path(stack.root) / "BENCH_A", cols.ravel(), rows.ravel())


def test_bench_imagery(setup):
    stack, lat, lon = setup
    device = os.environ.get("GEOPROM3E_BENCH_DEVICE", "cpu")
    res = {"latency_s": LATENCY_S, "cells": len(lat), "naive_cells": N_NAIVE, "device": device, "ours": {}}
    _ours(stack, lat[:8], lon[:8], 8)  # warm-up (imports, pgstac plans)
    for t in (1, 8, 32):
        res["ours"][f"threads_{t}"] = _ours(stack, lat, lon, t)
    res["ours"]["threads_32_no_scl"] = _ours(stack, lat, lon, 32, scl=False)
    res["naive_a"] = _naive(stack, lat, lon)
    res["bare_b"] = _bare(stack, lat, lon, 32)
    slat, slon = _sparse_cells(stack)
    res["sparse_16_cells"] = {"ours_threads_32": _ours(stack, slat, slon, 32), "bare": _bare(stack, slat, slon, 32)}
    with_scl = res["ours"]["threads_32"]
    res["b_requests_per_chip_with_scl"] = with_scl["file_requests_per_chip"]
    res["b_requests_per_chip_bare_baseline"] = res["bare_b"]["file_requests_per_chip"]
    res["b_target"] = 2.3
    best = res["ours"]["threads_32"]["chips_per_s"]
    res["ratio_vs_naive_a"] = best / res["naive_a"]["chips_per_s"]
    res["ratio_no_scl_vs_bare_b"] = res["ours"]["threads_32_no_scl"]["chips_per_s"] / res["bare_b"]["chips_per_s"]
    res["ratio_with_scl_vs_bare_b"] = best / res["bare_b"]["chips_per_s"]
    path = write_results("imagery", res)
    print(f"\nimagery benchmark -> {path}")
    for k, v in res["ours"].items():
        print(f"  ours {k:18s} {v['chips_per_s']:7.1f} chips/s  {v['requests_per_chip']:.2f} req/chip")
    for k in ("naive_a", "bare_b"):
        print(f"  {k:23s} {res[k]['chips_per_s']:7.1f} chips/s  {res[k]['requests_per_chip']:.2f} req/chip")
    print(f"  ours(32) / naive(a) = {res['ratio_vs_naive_a']:.1f}x; ours(32, no SCL) / bare(b) = "
          f"{res['ratio_no_scl_vs_bare_b']:.0%}; ours(32, with SCL) / bare(b) = {res['ratio_with_scl_vs_bare_b']:.0%}")
    sp = res["sparse_16_cells"]
    print(f"  (b) COG requests per chip with SCL: {res['b_requests_per_chip_with_scl']:.2f} (target <= 2.3; "
          f"bare loop without SCL {res['b_requests_per_chip_bare_baseline']:.2f}); sparse lattice: ours "
          f"{sp['ours_threads_32']['file_requests_per_chip']:.2f} with SCL, bare "
          f"{sp['bare']['file_requests_per_chip']:.2f} without")
    assert res["ours"]["threads_32"]["chips"] == len(lat) and res["bare_b"]["chips"] == len(lat)
    assert res["b_requests_per_chip_with_scl"] <= 2.3
    assert res["naive_a"]["chips"] == N_NAIVE
