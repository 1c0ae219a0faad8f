import pytest

from geoprom3e.errors import ConfigError
from geoprom3e.imagery import ImageryRequest, parse_datetime_window
from geoprom3e.imagery.request import stac_datetime
from geoprom3e.imagery.search import cloud_filter, is_static_catalog, search_parameters


def test_defaults_match_taxabind_sat_encoder():
    r = ImageryRequest()
    assert r.assets == ("visual",) and r.band_names == ("red", "green", "blue") and r.dtype == "uint8"
    assert r.chip_size == 256 and r.resolution == 10.0 and r.chip_extent_m == 2560
    assert r.datetime.startswith("2020-05") and r.datetime.endswith("2020-09-30") and r.max_cloud <= 20
    assert r.collection == "sentinel-2-l2a" and "planetarycomputer" in r.stac_url


def test_json_roundtrip_and_bands():
    r = ImageryRequest(assets=["B04", "B03", "B02"], selection="median", median_k=5)
    assert r.assets == ("B04", "B03", "B02") and r.dtype == "uint16" and r.band_names == r.assets
    assert ImageryRequest.from_json(r.to_json()) == r


@pytest.mark.parametrize("kw, words", [
    ({"max_cloud": 0}, "max_cloud"), ({"max_cloud": 101}, "(0, 100]"), ({"datetime": "2020-05-01"}, "START/END"),
    ({"datetime": "2020-13-01/2020-12-01"}, "not an ISO date"), ({"datetime": "2021-01-01/2020-01-01"}, "swap"),
    ({"assets": ()}, "at least one asset"), ({"assets": ("visual", "B04")}, "alone"),
    ({"selection": "best"}, "least-cloudy, median"), ({"chip_size": 4}, "16..4096"), ({"signing": "x"}, "auto"),
])
def test_bad_settings_raise_one_line_config_errors(kw, words):
    with pytest.raises(ConfigError) as e:
        ImageryRequest(**kw)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_datetime_window_is_inclusive_and_open_ended():
    a, b = parse_datetime_window("2020-05-01/2020-09-30")
    assert (a.isoformat(), b.date().isoformat()) == ("2020-05-01T00:00:00+00:00", "2020-09-30")
    assert stac_datetime("2020-05-01/..") == "2020-05-01T00:00:00Z/.."
    assert stac_datetime("2020-05-01/2020-09-30").endswith("2020-09-30T23:59:59.999999Z")


def test_search_uses_cql2_json_filter_sortby_and_large_pages():
    p = search_parameters(ImageryRequest(max_cloud=15), (-120, 35, -119, 36))
    assert p["filter"] == cloud_filter(15) == {"op": "<", "args": [{"property": "eo:cloud_cover"}, 15.0]}
    assert p["filter_lang"] == "cql2-json" and p["sortby"] == [{"field": "eo:cloud_cover", "direction": "asc"}]
    assert p["limit"] >= 500 and "query" not in p


def test_static_catalog_detection():
    assert is_static_catalog("/data/catalog.json") and is_static_catalog("file:///data/catalog.json")
    assert not is_static_catalog("https://planetarycomputer.microsoft.com/api/stac/v1")
