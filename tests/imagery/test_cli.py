import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from pyproj import Transformer

from geoprom3e.cli import main
from geoprom3e.testing.cogs import scene_lonlat, utm_epsg
from geoprom3e.testing.pgstac import free_port
from tests.imagery.conftest import synthetic

WINDOW = "2020-01-01/2020-12-31"


def _run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    err = getattr(r, "stderr", "") or r.output
    return r, err


def _error_lines(err: str) -> list[str]:
    """What is left on screen: the text after the last carriage return of each line (progress bars redraw)."""
    return [line.split("\r")[-1] for line in err.strip().splitlines() if line.split("\r")[-1].strip()]


@pytest.fixture
def cat_and_cells(tmp_path, served_catalog):
    root = tmp_path / "s"
    a = synthetic(root, "SCENE_A", seed=1, cloud_cover=3.0)
    _, cat = served_catalog(root)
    lat, lon = scene_lonlat(a, [200, 300], [256, 256])
    csv = tmp_path / "cells.csv"
    csv.write_text("cell_id,lat,lon\n" + "".join(f"{i},{y},{x}\n" for i, (y, x) in enumerate(zip(lat, lon)))
                   + "7,45.0,-100.0\n")
    return cat, csv


def test_fetch_chips_cli_writes_store_failures_and_sheet(cat_and_cells, tmp_path):
    cat, csv = cat_and_cells
    out = tmp_path / "chips.zarr"
    r, err = _run("fetch-chips", "--cells", csv, "--stac-url", f"file://{cat}", "--datetime", WINDOW, "--out", out,
                  "--allow-host", "127.0.0.1")
    assert r.exit_code == 0, err
    assert "2/3 cells done, 0 failed, 1 without a scene" in r.output and "chips/s" in r.output
    assert (tmp_path / "chips.failures.csv").read_text().splitlines()[1].startswith("7,45.0,-100.0,no_scene,")
    assert (tmp_path / "chips.contact.png").exists()
    ds = xr.open_zarr(out)
    assert sorted(ds.cell_id.values.tolist()) == [0, 1, 7] and int((ds.status == 1).sum()) == 2
    # a second run resumes: nothing left to fetch but the cell without a scene, which is kept unless asked
    r2, _ = _run("fetch-chips", "--cells", csv, "--stac-url", str(cat), "--datetime", WINDOW, "--out", out,
                 "--allow-host", "127.0.0.1")
    assert r2.exit_code == 0 and "0 fetched" in r2.output, r2.output


def test_fetch_chips_cli_on_a_grid_with_bbox(tmp_path, served_catalog):
    from geoprom3e.grid import get_grid

    g = get_grid("usa-250x500")
    lat, lon = g.cell_centers()
    r0, c0 = 130, 60  # a cell in California
    clat, clon = lat[r0, c0], lon[r0, c0]
    epsg = utm_epsg(clon, clat)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(clon, clat)
    root = tmp_path / "s"
    synthetic(root, "SCENE_CA", seed=1, epsg=epsg, x0=round(x) - 2560, y0=round(y) + 2560)
    _, cat = served_catalog(root)
    out = tmp_path / "grid.zarr"
    bbox = (clon - 0.12, clat - 0.06, clon + 0.12, clat + 0.06)  # this cell and its east/west neighbours
    r, err = _run("fetch-chips", "--grid", "usa-250x500", "--bbox", *bbox, "--stac-url", cat, "--datetime", WINDOW,
                  "--out", out, "--allow-host", "127.0.0.1")
    assert r.exit_code == 0, err
    ds = xr.open_zarr(out)
    assert sorted(ds.cell_id.values.tolist()) == [r0 * 500 + c0 - 1, r0 * 500 + c0, r0 * 500 + c0 + 1]
    done = ds.cell_id.values[ds.status.values == 1].tolist()
    assert done == [r0 * 500 + c0] and ds.attrs["grid"] == "usa-250x500"


@pytest.mark.parametrize("args, words", [
    (["--datetime", "2020-05-01"], "datetime window '2020-05-01' is malformed"),
    (["--max-cloud", "150"], "max_cloud = 150.0 is out of range"),
    (["--assets", "B04,B03"], "asset(s) B04, B03 not in the items"),
    (["--collection", "landsat-c2-l2"], "collection 'landsat-c2-l2' not in catalogue"),
    (["--bbox", "10", "10", "11", "11"], "no cells to fetch"),
])
def test_fetch_chips_bad_input_one_line_exit_2(cat_and_cells, tmp_path, args, words):
    cat, csv = cat_and_cells
    base = ["fetch-chips", "--cells", csv, "--stac-url", cat, "--datetime", WINDOW, "--out", tmp_path / "x.zarr"]
    r, err = _run(*base, *args)
    assert r.exit_code == 2 and words in err, err
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and not (tmp_path / "x.zarr").exists()


def test_unreachable_stac_api_exit_2(cat_and_cells, tmp_path):
    _, csv = cat_and_cells
    url = f"http://127.0.0.1:{free_port()}/api/stac/v1"
    r, err = _run("fetch-chips", "--cells", csv, "--stac-url", url, "--out", tmp_path / "x.zarr")
    assert r.exit_code == 2 and "cannot open STAC API" in err and len(_error_lines(err)) == 1


def test_help_teaches_with_examples():
    r, _ = _run("fetch-chips", "--help")
    assert r.exit_code == 0 and "Examples:" in r.output and "xarray.open_zarr" in r.output
    r, _ = _run("stac", "serve", "--help")
    assert r.exit_code == 0 and "geoprom3e stac serve ./scenes" in r.output


def test_make_scenes_and_static_catalog(tmp_path):
    r, err = _run("stac", "make-scenes", tmp_path / "scenes", "--catalog", tmp_path / "cat")
    assert r.exit_code == 0, err
    assert "3 scene(s)" in r.output and (tmp_path / "cat" / "catalog.json").exists()
    from geoprom3e.imagery import ImageryRequest, open_source

    src = open_source(ImageryRequest(stac_url=str(tmp_path / "cat"), datetime=WINDOW, max_cloud=100))
    found = src.search((-180, -90, 180, 90))
    assert [s.id for s in found] == ["SYN_0", "SYN_1", "SYN_2"] and np.isclose(found[2].cloud_cover, 25.0)


def test_stac_serve_runs_until_stopped(tmp_path, pgstac_api):
    import threading

    import pystac_client

    from geoprom3e.testing.stac import serve_local_stac

    synthetic(tmp_path / "scenes", "SERVED", seed=1)
    ready, stop, seen = threading.Event(), threading.Event(), {}

    def on_ready(stack):
        seen["url"], seen["files"] = stack.stac_url, stack.files.url
        ready.set()

    t = threading.Thread(target=serve_local_stac, args=(tmp_path / "scenes",),
                         kwargs={"ready": on_ready, "stop": stop}, daemon=True)
    t.start()
    assert ready.wait(120)
    items = list(pystac_client.Client.open(seen["url"]).search(collections=["sentinel-2-l2a"]).items_as_dicts())
    assert [i["id"] for i in items] == ["SERVED"] and items[0]["assets"]["visual"]["href"].startswith(seen["files"])
    stop.set()
    t.join(30)
    assert not t.is_alive()
