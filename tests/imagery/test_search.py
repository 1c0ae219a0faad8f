import numpy as np
import pystac_client
import pytest

from geoprom3e.errors import ConfigError, ImageryError
from geoprom3e.imagery import ImageryRequest, StacApiSource, StaticCatalogSource, open_source, search_parameters
from geoprom3e.testing.cogs import scene_lonlat
from tests.imagery.conftest import synthetic

WINDOW = "2020-01-01/2020-12-31"


@pytest.fixture
def three_scenes(tmp_path):
    root = tmp_path / "scenes"
    synthetic(root, "S2_CLEAR_A", seed=1, cloud_cover=12.0)
    synthetic(root, "S2_CLEAREST", seed=2, cloud_cover=3.0)
    synthetic(root, "S2_OVERCAST", seed=3, cloud_cover=64.0)
    synthetic(root, "S2_OTHER_YEAR", seed=4, cloud_cover=1.0, datetime="2019-07-01T18:30:00Z")
    return root


def _bbox(root):
    lat, lon = scene_lonlat(root / "S2_CLEAR_A", [256], [256])
    return (lon[0] - 0.01, lat[0] - 0.01, lon[0] + 0.01, lat[0] + 0.01)


def test_pgstac_cloud_filter_really_filters_and_sorts(three_scenes, stack):
    s = stack(three_scenes)
    req = ImageryRequest(stac_url=s.stac_url, collection=s.collection, datetime=WINDOW, max_cloud=20)
    client = pystac_client.Client.open(s.stac_url)
    params = search_parameters(req, _bbox(three_scenes))
    unfiltered = {i["id"] for i in client.search(collections=[s.collection], bbox=params["bbox"]).items_as_dicts()}
    assert "S2_OVERCAST" in unfiltered  # the cloudy item is there and reachable ...
    served = [i["id"] for i in client.search(**params).items_as_dicts()]
    assert served == ["S2_CLEAREST", "S2_CLEAR_A"]  # ... the server drops it (and the other year), sorted by cloud
    src = StacApiSource(req)
    assert [sc.id for sc in src.search(_bbox(three_scenes))] == served
    assert src.ignored_filter_items == 0  # the server filtered, not our local safety net


def test_static_catalog_has_the_same_semantics(three_scenes, served_catalog):
    _, cat = served_catalog(three_scenes)
    req = ImageryRequest(stac_url=f"file://{cat}", datetime=WINDOW, max_cloud=20)
    src = open_source(req)
    assert isinstance(src, StaticCatalogSource)
    assert [sc.id for sc in src.search(_bbox(three_scenes))] == ["S2_CLEAREST", "S2_CLEAR_A"]
    assert src.search((0.0, 0.0, 1.0, 1.0)) == []
    scene = src.search(_bbox(three_scenes))[0]
    assert scene.epsg == 32611 and set(scene.hrefs) >= {"visual", "SCL"} and scene.hrefs["visual"].startswith("http")


def test_unknown_collection_lists_what_the_server_has(three_scenes, stack):
    s = stack(three_scenes)
    with pytest.raises(ConfigError, match=f"collection 'sentinel-3' not found.*{s.collection}"):
        StacApiSource(ImageryRequest(stac_url=s.stac_url, collection="sentinel-3", datetime=WINDOW))


def test_missing_asset_lists_the_items_assets(three_scenes, stack):
    s = stack(three_scenes)
    src = StacApiSource(ImageryRequest(stac_url=s.stac_url, collection=s.collection, datetime=WINDOW,
                                       assets=("B04", "B03", "B02")))
    with pytest.raises(ConfigError, match=r"asset\(s\) B04, B03, B02 not in the items.*SCL, visual"):
        src.search(_bbox(three_scenes))


def test_unreachable_stac_url_is_one_clean_error():
    from geoprom3e.testing.pgstac import free_port

    req = ImageryRequest(stac_url=f"http://127.0.0.1:{free_port()}/api/stac/v1")
    with pytest.raises(ImageryError, match="cannot open STAC API .*check --stac-url") as e:
        StacApiSource(req, retries=1, backoff_s=0.01, timeout_s=2)
    assert "\n" not in str(e.value)


def test_static_catalog_missing_file_and_collection(tmp_path, three_scenes, served_catalog):
    with pytest.raises(ImageryError, match="does not exist"):
        open_source(ImageryRequest(stac_url=str(tmp_path / "nope" / "catalog.json")))
    _, cat = served_catalog(three_scenes)
    with pytest.raises(ConfigError, match="'landsat' not in catalogue.*sentinel-2-l2a"):
        open_source(ImageryRequest(stac_url=str(cat), collection="landsat"))


def test_assign_scenes_keeps_sorted_order_per_cell(three_scenes, served_catalog):
    from geoprom3e.imagery import assign_scenes

    _, cat = served_catalog(three_scenes)
    src = open_source(ImageryRequest(stac_url=str(cat), datetime=WINDOW, max_cloud=100))
    scenes = src.search(_bbox(three_scenes))
    lat, lon = scene_lonlat(three_scenes / "S2_CLEAR_A", [256], [256])
    per = assign_scenes(scenes, np.r_[lat, 10.0], np.r_[lon, 10.0], limit=2)
    assert [scenes[j].id for j in per[0]] == ["S2_CLEAREST", "S2_CLEAR_A"] and per[1] == []
