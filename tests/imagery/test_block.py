import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoprom3e.errors import InputError
from geoprom3e.imagery import DONE, FAILED, NO_SCENE, ImageryRequest, fetch_chip_block
from geoprom3e.testing.cogs import scene_lonlat
from tests.imagery.conftest import LOOPBACK, synthetic

WINDOW = "2020-01-01/2020-12-31"


def _req(cat, **kw):
    return ImageryRequest(stac_url=str(cat), datetime=kw.pop("datetime", WINDOW), allow_hosts=LOOPBACK, **kw)


def _direct(path, col, row, size=256):
    with rasterio.open(path) as ds:
        return ds.read(window=Window(col - size // 2, row - size // 2, size, size))


def test_real_chips_equal_a_direct_read_of_the_cog_window(real_scenes, stack):
    s = stack(real_scenes)
    scenes = sorted(p for p in real_scenes.iterdir() if p.is_dir())
    cells = []
    for d in scenes:
        with rasterio.open(d / "visual.tif") as ds:
            cells.append((d, ds.width // 2, ds.height // 2))
    lats, lons = zip(*[(a[0], b[0]) for a, b in (scene_lonlat(d, [c], [r]) for d, c, r in cells)])
    req = ImageryRequest(stac_url=s.stac_url, collection=s.collection, datetime="2024-01-01/2025-12-31",
                         assets=("visual",))
    block = fetch_chip_block(req, np.array(lats), np.array(lons), threads=4)
    assert list(block.status) == [DONE] * len(cells)
    for k, (d, c, r) in enumerate(cells):
        assert block.item_id[k] == d.name
        np.testing.assert_array_equal(block.chips[k], _direct(d / "visual.tif", c, r))
    assert block.chips.dtype == np.uint8 and block.chips.shape == (len(cells), 3, 256, 256)
    assert block.stats["search_requests"] == 1  # one search for the whole block, never one per cell
    assert np.all(block.cloud_fraction == 0)  # the SCL window was read and checked


def test_band_assets_mix_10_and_20_m(real_scenes, served_catalog):
    _, cat = served_catalog(real_scenes)
    d = sorted(p for p in real_scenes.iterdir() if p.is_dir())[0]
    with rasterio.open(d / "B08.tif") as ds:
        c, r = ds.width // 2 // 2 * 2, ds.height // 2 // 2 * 2  # even, so the 20 m window is aligned too
    lat, lon = scene_lonlat(d, [c], [r])
    block = fetch_chip_block(_req(cat, datetime="2024-01-01/2025-12-31", assets=("B08", "B12")), lat, lon, threads=2)
    assert block.status[0] == DONE and block.chips.dtype == np.uint16
    np.testing.assert_array_equal(block.chips[0, 0], _direct(d / "B08.tif", c, r)[0])
    b12 = _direct(d / "B12.tif", c // 2, r // 2, 128)[0]
    np.testing.assert_array_equal(block.chips[0, 1], np.repeat(np.repeat(b12, 2, 0), 2, 1))


def test_least_cloudy_then_scl_fallback(tmp_path, served_catalog):
    root = tmp_path / "s"
    a = synthetic(root, "A_LOW_SCENE_CLOUD", seed=1, cloud_cover=2.0, size_px=768,
                  scl_cloud_box=(0, 0, 384, 768))  # the west half of A is cloudy in SCL
    synthetic(root, "B_MORE_SCENE_CLOUD", seed=2, cloud_cover=9.0, size_px=768)
    synthetic(root, "C_TOO_CLOUDY", seed=3, cloud_cover=55.0, size_px=768)
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [192, 576], [384, 384])  # west cell under A's cloud, east cell clear
    block = fetch_chip_block(_req(cat), lat, lon, threads=2)
    assert list(block.status) == [DONE, DONE]
    assert block.item_id == ["B_MORE_SCENE_CLOUD", "A_LOW_SCENE_CLOUD"]
    np.testing.assert_array_equal(block.chips[0], _direct(root / "B_MORE_SCENE_CLOUD" / "visual.tif", 192, 384))
    np.testing.assert_array_equal(block.chips[1], _direct(a / "visual.tif", 576, 384))
    assert block.cloud_cover.tolist() == [9.0, 2.0] and block.cloud_fraction.tolist() == [0.0, 0.0]
    # without the SCL check, the least-cloudy scene wins everywhere
    plain = fetch_chip_block(_req(cat, scl_asset=None), lat, lon, threads=2)
    assert plain.item_id == ["A_LOW_SCENE_CLOUD", "A_LOW_SCENE_CLOUD"] and np.isnan(plain.cloud_fraction).all()


def test_every_scene_cloudy_uses_the_least_cloudy_chip(tmp_path, served_catalog):
    root = tmp_path / "s"
    a = synthetic(root, "A", seed=1, cloud_cover=2.0, scl_cloud_box=(0, 0, 512, 512))
    synthetic(root, "B", seed=2, cloud_cover=9.0, scl_cloud_box=(0, 0, 512, 300))
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [256], [256])
    block = fetch_chip_block(_req(cat), lat, lon, threads=1)
    assert block.status[0] == DONE and block.item_id == ["B"]
    assert 0.1 < block.cloud_fraction[0] < 1.0 and "cloudier than" in block.reason[0]


def test_scene_edge_is_mosaicked_from_the_next_scene(tmp_path, served_catalog):
    root = tmp_path / "s"
    a = synthetic(root, "A_EDGE", seed=1, cloud_cover=1.0, nodata_cols_from=300)
    synthetic(root, "B_FULL", seed=2, cloud_cover=8.0)
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [256], [256])
    block = fetch_chip_block(_req(cat), lat, lon, threads=1)
    assert block.status[0] == DONE and block.item_id == ["A_EDGE,B_FULL"] and "mosaic" in block.reason[0]
    da, db = _direct(a / "visual.tif", 256, 256), _direct(root / "B_FULL" / "visual.tif", 256, 256)
    np.testing.assert_array_equal(block.chips[0][:, :, :172], da[:, :, :172])
    np.testing.assert_array_equal(block.chips[0][:, :, 172:], db[:, :, 172:])


def test_edge_without_a_second_scene_is_no_scene_with_reason(tmp_path, served_catalog):
    root = tmp_path / "s"
    a = synthetic(root, "A_EDGE", seed=1, cloud_cover=1.0, nodata_cols_from=300)
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [256, 100], [256, 256])
    block = fetch_chip_block(_req(cat), lat, lon, threads=1)
    # a property of the data, not an outage: permanent (no_scene), not retried by --retry-failed
    assert block.status[0] == NO_SCENE and block.reason[0].startswith("no_scene: ")
    assert "cover only 67%" in block.reason[0]
    assert block.status[1] == NO_SCENE  # the west cell's window starts outside the scene (col -28)
    assert not block.chips[0].any()


def test_no_scene_and_corrupt_cog_are_recorded_not_raised(tmp_path, served_catalog):
    root = tmp_path / "s"
    good = synthetic(root, "GOOD", seed=1, cloud_cover=5.0, x0=500_000.0)
    bad = synthetic(root, "CORRUPT", seed=2, cloud_cover=5.0, x0=520_000.0)
    _, cat = served_catalog(root)
    lat_g, lon_g = scene_lonlat(good, [256], [256])
    lat_b, lon_b = scene_lonlat(bad, [256], [256])
    (bad / "visual.tif").write_bytes(b"II*\x00" + b"\x17" * 5000)  # garbage after a TIFF magic
    block = fetch_chip_block(_req(cat), np.r_[lat_g, lat_b, 40.0], np.r_[lon_g, lon_b, -100.0], threads=2)
    assert list(block.status) == [DONE, FAILED, NO_SCENE]
    assert block.reason[1].startswith("corrupt: CORRUPT: ") and "not a readable TIFF" in block.reason[1]
    assert block.reason[2].startswith("no_scene: no sentinel-2-l2a scene with cloud < 20%")


def test_median_of_k_scenes_ignores_clouded_pixels(tmp_path, served_catalog):
    root = tmp_path / "s"
    a = synthetic(root, "M1", fill=10, cloud_cover=1.0)
    synthetic(root, "M2", fill=20, cloud_cover=2.0, scl_cloud_box=(0, 0, 256, 512))  # west half cloudy
    synthetic(root, "M3", fill=60, cloud_cover=3.0)
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [256], [256])
    block = fetch_chip_block(_req(cat, selection="median", median_k=3), lat, lon, threads=1)
    assert block.status[0] == DONE and block.item_id == ["M1,M2,M3"]
    chip = block.chips[0]
    assert (chip[:, :, :128] == 35).all() and (chip[:, :, 128:] == 20).all()  # median(10, 60) | median(10, 20, 60)


def test_bad_cell_coordinates_raise():
    with pytest.raises(InputError, match=r"latitude must be in \[-90, 90\].*latitude first"):
        fetch_chip_block(ImageryRequest(stac_url="/nonexistent/catalog.json"), [-100.0], [40.0])


def test_truncated_cog_file_is_listed_with_reason(tmp_path, served_catalog):
    from geoprom3e.imagery import ReadSettings

    root = tmp_path / "s"
    a = synthetic(root, "CUT", seed=1, cloud_cover=5.0, size_px=1024)
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [800], [800])
    data = (a / "visual.tif").read_bytes()
    (a / "visual.tif").write_bytes(data[: len(data) // 3])  # the file itself is cut short
    block = fetch_chip_block(_req(cat), lat, lon, threads=1,
                             settings=ReadSettings(retries=1, backoff_s=0.01, http_timeout_s=2, gdal_retries=0))
    # whole HTTP answers about a file that is itself short: corrupt, not an outage
    assert block.status[0] == FAILED and block.reason[0].startswith("corrupt: CUT: ") and not block.chips.any()
