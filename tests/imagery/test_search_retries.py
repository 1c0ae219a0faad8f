"""STAC search survives 429/5xx from the API (urllib3 Retry with backoff) and fails in one line when retries run out."""

from __future__ import annotations

import pytest

from geoprom3e.errors import ImageryError
from geoprom3e.imagery import ImageryRequest, fetch_chip_block
from geoprom3e.imagery.search import StacApiSource
from geoprom3e.testing.cogs import write_synthetic_scene
from geoprom3e.testing.faults import FaultyApiProxy

# a synthetic scene at UTM 11N (500 000 E, 4 000 000 N) is around 36.14 N, -117.0 E
LAT, LON = 36.1, -117.0


@pytest.fixture
def api(stack, tmp_path):
    write_synthetic_scene(tmp_path / "scenes", "SYN_A", x0=490_000.0, y0=4_005_000.0, size_px=1500, seed=1)
    return stack(tmp_path / "scenes")


@pytest.mark.parametrize("status", [503, 429])
def test_search_is_retried_after_server_errors(api, status):
    with FaultyApiProxy(api.stac_url, fail_first=2, status=status) as proxy:
        req = ImageryRequest(stac_url=proxy.url, collection=api.collection, datetime="2020-01-01/2020-12-31",
                             chip_size=64)
        src = StacApiSource(req, retries=4, backoff_s=0.01)
        scenes = src.search((LON - 0.05, LAT - 0.05, LON + 0.05, LAT + 0.05))
        assert [s.id for s in scenes] == ["SYN_A"]
        assert proxy.counts["failed"] == 2 and proxy.counts["search"] == 3  # two faults, then the answer
        block = fetch_chip_block(req, [LAT], [LON], source=src, threads=2)
        assert block.n_done == 1


def test_search_gives_up_with_one_line_when_retries_run_out(api):
    with FaultyApiProxy(api.stac_url, fail_first=100, status=503) as proxy:
        req = ImageryRequest(stac_url=proxy.url, collection=api.collection, datetime="2020-01-01/2020-12-31")
        src = StacApiSource(req, retries=2, backoff_s=0.01)
        with pytest.raises(ImageryError, match=r"STAC search at .* failed for bbox") as exc:
            src.search((LON - 0.05, LAT - 0.05, LON + 0.05, LAT + 0.05))
        assert "\n" not in str(exc.value)
        assert proxy.counts["search"] == 3  # the first try and two retries
