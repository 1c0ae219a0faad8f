"""Asset hrefs are checked before anything is opened: http(s) on allowed hosts, local files only from a local
catalogue and inside its folder tree (or an allowed folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoprom3e.errors import ImageryError
from geoprom3e.imagery import FAILED, ImageryRequest, fetch_chip_block
from geoprom3e.imagery.hrefs import href_policy
from geoprom3e.testing.cogs import scene_lonlat
from geoprom3e.testing.faults import FaultyFileServer
from geoprom3e.testing.stac import build_items, write_static_catalog
from tests.imagery.conftest import LOOPBACK, synthetic

WINDOW = "2020-01-01/2020-12-31"


def _catalog(items: list[dict], out: Path) -> Path:
    return write_static_catalog(items, out)


def test_a_local_catalogue_naming_etc_passwd_stops_with_one_line(tmp_path):
    root = tmp_path / "s"
    a = synthetic(root, "EVIL", seed=1)
    items = build_items(root, str((tmp_path / "s").resolve()))
    for asset in items[0]["assets"].values():
        asset["href"] = "file:///etc/passwd"
    cat = _catalog(items, tmp_path / "cat")
    lat, lon = scene_lonlat(a, [256], [256])
    with pytest.raises(ImageryError, match=r"'/etc/passwd' lies outside the catalogue's folder .*--allow-local-dir"):
        fetch_chip_block(ImageryRequest(stac_url=str(cat), datetime=WINDOW), lat, lon, threads=1)


def test_scenes_beside_the_catalogue_need_the_allowed_folder(tmp_path):
    root = tmp_path / "scenes"
    a = synthetic(root, "LOCAL", seed=1)
    cat = _catalog(build_items(root, str(root.resolve())), tmp_path / "stac")  # beside it, not under it
    lat, lon = scene_lonlat(a, [256], [256])
    with pytest.raises(ImageryError, match=r"--allow-local-dir"):
        fetch_chip_block(ImageryRequest(stac_url=str(cat), datetime=WINDOW), lat, lon, threads=1)
    ok = fetch_chip_block(ImageryRequest(stac_url=str(cat), datetime=WINDOW, allow_local_dirs=(str(root),)),
                          lat, lon, threads=1)
    assert ok.n_done == 1
    # a symlink inside the allowed folder that leads out of it is followed and refused
    (root / "LOCAL" / "escape.tif").symlink_to("/etc/passwd")
    pol = href_policy(ImageryRequest(stac_url=str(cat), allow_local_dirs=(str(root),)))
    assert pol.refusal(str(root / "LOCAL" / "visual.tif")) is None
    assert "lies outside" in pol.refusal(str(root / "LOCAL" / "escape.tif"))
    assert "lies outside" in pol.refusal(f"file://{root}/../../../etc/passwd")


def test_an_href_on_another_host_is_never_fetched(tmp_path):
    root, other_root = tmp_path / "s", tmp_path / "o"
    a = synthetic(root, "HOME", seed=1, cloud_cover=9.0)
    synthetic(other_root, "AWAY", seed=2, cloud_cover=1.0)  # the least cloudy scene lives on another host
    with FaultyFileServer(root) as home, FaultyFileServer(other_root) as away:
        away_url = away.url.replace("127.0.0.1", "localhost")
        items = build_items(root, home.url) + build_items(other_root, away_url)
        cat = _catalog(items, tmp_path / "cat")
        lat, lon = scene_lonlat(a, [256, 300], [256, 256])
        # without --allow-host nothing is fetched at all: the local catalogue has no API host
        with pytest.raises(ImageryError, match=r"names host '(127.0.0.1|localhost)'.*--allow-host"):
            fetch_chip_block(ImageryRequest(stac_url=str(cat), datetime=WINDOW), lat, lon, threads=2)
        assert home.stats()["total_requests"] == 0 and away.stats()["total_requests"] == 0
        block = fetch_chip_block(ImageryRequest(stac_url=str(cat), datetime=WINDOW, allow_hosts=LOOPBACK), lat, lon,
                                 threads=2)
        assert list(block.status) == [FAILED, FAILED] and away.stats()["total_requests"] == 0
        assert all(r.startswith("refused: AWAY: ") and "--allow-host localhost" in r for r in block.reason)
        ok = fetch_chip_block(ImageryRequest(stac_url=str(cat), datetime=WINDOW,
                                             allow_hosts=("127.0.0.1", "localhost")), lat, lon, threads=2)
        assert ok.n_done == 2 and ok.item_id == ["AWAY", "AWAY"] and away.stats()["total_requests"] > 0


def test_policy_hosts_follow_the_api_and_the_signing_provider():
    pc = href_policy(ImageryRequest())
    assert pc.refusal("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/x/TCI.tif") is None
    assert pc.refusal("https://planetarycomputer.microsoft.com/x.tif") is None  # the API's own host
    assert "--allow-host evil.example.org" in pc.refusal("https://evil.example.org/x.tif")
    assert "catalogue is remote" in pc.refusal("file:///etc/passwd")
    assert "catalogue is remote" in pc.refusal("/etc/passwd")
    assert "scheme 's3'" in pc.refusal("s3://bucket/x.tif")
    never = href_policy(ImageryRequest(signing="never", allow_hosts=("*.example.org",)))
    assert never.refusal("https://a.example.org/x.tif") is None
    assert never.refusal("https://sentinel2l2a01.blob.core.windows.net/x.tif") is not None


def test_allow_lists_stay_out_of_the_cache_key_and_the_store_match():
    from geoprom3e.engine.sources import SatInput

    class NoEncoder(SatInput):  # the imagery part of the key only (the encoder part needs weights)
        def _encoder_key(self):
            return {}

    a = ImageryRequest()
    b = ImageryRequest(allow_hosts=("data.example.org",), allow_local_dirs=("/tmp",))
    assert a == b and ImageryRequest.from_json(b.to_json()).allow_hosts == ("data.example.org",)
    assert NoEncoder(request=a).cache_key() == NoEncoder(request=b).cache_key()
    assert NoEncoder(request=a).cache_key() != NoEncoder(request=a.replace(max_cloud=10)).cache_key()
    with pytest.raises(Exception, match="not a host name"):
        ImageryRequest(allow_hosts=("http://x.org/",))


def test_cli_refusal_is_one_line_exit_2_and_the_flag_allows_it(tmp_path, served_catalog):
    from geoprom3e.cli import main

    root = tmp_path / "s"
    a = synthetic(root, "SCENE_A", seed=1)
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [256], [256])
    csv = tmp_path / "cells.csv"
    csv.write_text(f"cell_id,lat,lon\n0,{lat[0]},{lon[0]}\n")
    out = tmp_path / "x.zarr"
    base = ["fetch-chips", "--cells", str(csv), "--stac-url", str(cat), "--datetime", WINDOW, "--out", str(out)]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 2 and "--allow-host 127.0.0.1" in r.output and not out.exists(), r.output
    r = CliRunner().invoke(main, [*base, "--allow-host", "127.0.0.1"])
    assert r.exit_code == 0 and "1/1 cells done" in r.output, r.output
    assert np.isfinite(lat).all()
