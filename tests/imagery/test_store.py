import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
import zarr

from geoprom3e.errors import CacheError, InputError
from geoprom3e.imagery import DONE, PENDING, ImageryRequest, fetch_chips_to_zarr, spatial_order
from geoprom3e.testing.cogs import scene_lonlat
from geoprom3e.testing.faults import FaultConfig
from tests.imagery.conftest import LOOPBACK, synthetic

WINDOW = "2020-01-01/2020-12-31"

CHILD = """
import json, sys
import numpy as np
from geoprom3e.imagery import ImageryRequest, fetch_chips_to_zarr
a = json.loads(sys.argv[1])
fetch_chips_to_zarr(ImageryRequest.from_json(a["req"]), a["ids"], a["lat"], a["lon"], a["out"], block_size=4,
                    threads=2)
"""


@pytest.fixture
def scene_cells(tmp_path):
    root = tmp_path / "s"
    a = synthetic(root, "SCENE_A", seed=1, cloud_cover=3.0, size_px=1024, scl_cloud_box=(0, 0, 300, 1024))
    synthetic(root, "SCENE_B", seed=2, cloud_cover=7.0, size_px=1024)
    cols, rows = np.meshgrid(np.arange(5) * 120 + 256, np.arange(4) * 150 + 256)
    lat, lon = scene_lonlat(a, cols.ravel(), rows.ravel())
    ids = np.arange(20)[::-1] * 7 + 1000  # ids in no particular order
    return root, ids, lat, lon


def _same(a, b):
    for v in ("chips", "status", "item_id", "cloud_fraction", "cell_id", "lat", "lon"):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_store_layout_reads_with_xarray(scene_cells, served_catalog, tmp_path):
    root, ids, lat, lon = scene_cells
    _, cat = served_catalog(root)
    out = tmp_path / "chips.zarr"
    s = fetch_chips_to_zarr(ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW), ids, lat, lon,
                            out, block_size=8)
    ds = xr.open_zarr(out)
    assert dict(ds.sizes) == {"cell": 20, "band": 3, "y": 256, "x": 256} and ds.chips.dtype == np.uint8
    for v in ("chips", "cell_id", "lat", "lon", "item_id", "datetime", "cloud_cover", "cloud_fraction", "status"):
        assert v in ds.variables, v
    assert list(ds.band.values) == ["red", "green", "blue"] and ds.status.attrs["flag_meanings"].startswith("pending")
    assert sorted(ds.cell_id.values.tolist()) == sorted(ids.tolist()) and (ds.status.values == DONE).all()
    # cells are stored in spatial-block order; each keeps its own coordinates
    k = int(np.nonzero(ds.cell_id.values == ids[0])[0][0])
    assert (ds.lat.values[k], ds.lon.values[k]) == (lat[0], lon[0])
    assert ds.item_id.values[k] == "SCENE_B" and ds.cloud_cover.values[k] == 7.0  # under A's SCL cloud
    assert set(ds.datetime.values) == {"2020-07-01T18:30:00Z"}
    assert ImageryRequest.from_json(ds.attrs["imagery_request"]).stac_url == str(cat)
    assert s.contact_sheet and open(s.contact_sheet, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert s.failures_csv is None and json.loads(out.with_name("chips.summary.json").read_text())["cells"] == 20
    assert s.search_requests == 3  # one per block of 8 cells, not one per cell


def test_killed_run_resumes_to_the_same_store(scene_cells, served_catalog, tmp_path):
    root, ids, lat, lon = scene_cells
    files, cat = served_catalog(root, FaultConfig(latency_s=0.05))
    req = ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW)
    out = tmp_path / "killed.zarr"
    arg = json.dumps({"req": req.to_json(), "ids": ids.tolist(), "lat": lat.tolist(), "lon": lon.tolist(),
                      "out": str(out)})
    child = subprocess.Popen([sys.executable, "-c", CHILD, arg], env=dict(os.environ, PYTHONWARNINGS="ignore"))
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
        try:
            done = int((zarr.open_group(str(out), mode="r")["status"][:] == DONE).sum())
        except Exception:  # store not created yet
            continue
        if done >= 4:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    status = zarr.open_group(str(out), mode="r")["status"][:]
    assert 4 <= (status == DONE).sum() < 20 and (status == PENDING).any(), status  # really killed mid-run
    files.set_faults(FaultConfig())
    s = fetch_chips_to_zarr(req, ids, lat, lon, out, block_size=4, threads=2)
    assert s.counts["done"] == 20 and s.extra["skipped_done"] == int((status == DONE).sum())
    fetch_chips_to_zarr(req, ids, lat, lon, tmp_path / "clean.zarr", block_size=4, threads=2)
    _same(xr.open_zarr(out), xr.open_zarr(tmp_path / "clean.zarr"))


def test_resume_refuses_other_settings_or_cells(scene_cells, served_catalog, tmp_path):
    root, ids, lat, lon = scene_cells
    _, cat = served_catalog(root)
    req = ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW)
    out = tmp_path / "c.zarr"
    fetch_chips_to_zarr(req, ids[:4], lat[:4], lon[:4], out, max_blocks=0)
    with pytest.raises(CacheError, match=r"other settings \(max_cloud: 20.0 -> 5.0\).*--overwrite"):
        fetch_chips_to_zarr(req.replace(max_cloud=5.0), ids[:4], lat[:4], lon[:4], out)
    with pytest.raises(CacheError, match="holds 4 other cells than the 5 asked for"):
        fetch_chips_to_zarr(req, ids[:5], lat[:5], lon[:5], out)
    s = fetch_chips_to_zarr(req.replace(max_cloud=5.0), ids[:4], lat[:4], lon[:4], out, overwrite=True)
    assert s.counts["done"] == 4
    (tmp_path / "junk.zarr").mkdir()
    with pytest.raises(CacheError, match="not a geoprom3e chip store"):
        fetch_chips_to_zarr(req, ids[:4], lat[:4], lon[:4], tmp_path / "junk.zarr")
    with pytest.raises(InputError, match="not unique"):
        fetch_chips_to_zarr(req, [1, 1], lat[:2], lon[:2], tmp_path / "d.zarr")


def test_spatial_order_groups_cells_by_tile():
    lat = np.array([40.5, 45.5, 40.6, 45.4])
    lon = np.array([-100.5, -100.5, -100.4, -100.6])
    order = spatial_order(lat, lon)
    assert order.tolist() == [1, 3, 2, 0]  # the 45N tile first (north to south), then the 40N tile
