"""STAC Items and the folder catalog for real map outputs (COGs written by write_maps, read back with rasterio).

pystac's ``Item.validate()`` fetches the JSON schemas from the internet, which tests never touch; the fields
are checked directly here instead (against the files themselves), plus stac-pydantic's offline model of the
core spec.
"""

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import CRS
from shapely.geometry import MultiPoint, shape

from geoprom3e.errors import InputError, OutputError
from geoprom3e.grid import GridSpec, get_grid
from geoprom3e.io import NODATA, LayerInfo, write_maps
from geoprom3e.io.stac_items import (
    CATALOG_NAME,
    COG_MEDIA_TYPE,
    footprint_lonlat,
    item_path,
    map_item,
    update_catalog,
    write_item,
)

INFO = {"shannon": LayerInfo("Shannon diversity", "1", "viridis"), "richness": LayerInfo("richness", "count", "magma")}
RANGE = (dt.datetime(2020, 3, 1, 12, 0, tzinfo=dt.timezone.utc), dt.date(2020, 9, 30))
# an Albers projection centred on Colorado: a CRS with no EPSG code
AEA = "+proj=aea +lat_0=39 +lon_0=-105 +lat_1=37 +lat_2=41 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"


def _grids():
    return {
        "geo": get_grid("usa-250x500").subset((-106.2, 38, -102.8, 40)),
        "albers": get_grid("usa-5km-albers").subset((-900_000, 1_500_000, -650_000, 1_700_000)),
        "noepsg": GridSpec("aea-custom", AEA, (-100_000, -80_000, 100_000, 80_000), (16, 20),
                           mask_source="none"),
    }


def _layers(grid, seed):
    rng = np.random.default_rng(seed)
    mask = grid.mask()
    a = np.where(mask, rng.uniform(0, 4, grid.shape), np.nan).astype(np.float32)
    b = np.where(mask, rng.integers(0, 50, grid.shape), np.nan).astype(np.float32)
    return {"shannon": a, "richness": b}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One output folder holding three maps, each with its Item, and the catalog (write_maps writes an item of
    its own; the test rewrites it with a date range and a title to check those fields)."""
    out = tmp_path_factory.mktemp("stac")
    maps = {}
    for seed, (name, grid) in enumerate(_grids().items()):
        layers = _layers(grid, seed)
        outputs = write_maps(out, grid, layers, basename=f"div_{name}", info=INFO, attrs={"sigma": 2.0},
                             manifest={"kind": "test"}, settings={"sigma": 2.0})
        rng = None if name == "noepsg" else RANGE
        item = map_item(outputs, grid, list(layers), info=INFO, arrays=layers, datetime_range=rng,
                        properties={"sigma": 2.0, "method": "test", "title": f"Diversity ({name})"})
        path = write_item(item, item_path(outputs))
        maps[name] = (grid, layers, outputs, path)
    update_catalog(out, title="test maps")
    return out, maps


def _file_item(path: Path) -> pystac.Item:
    return pystac.Item.from_file(str(path))


def test_item_projection_and_bands_equal_the_geotiff(folder):
    _, maps = folder
    for name, (grid, _, outputs, path) in maps.items():
        item = _file_item(path)
        asset = item.assets["data"]
        assert asset.media_type == COG_MEDIA_TYPE and asset.roles == ["data"]
        d = asset.to_dict()
        with rasterio.open(outputs.geotiff) as src:
            assert d["proj:shape"] == [src.height, src.width]
            assert d["proj:transform"] == list(src.transform)[:6]
            assert tuple(d["proj:bbox"]) == pytest.approx(tuple(src.bounds), abs=1e-9)
            if name == "noepsg":
                assert grid.epsg is None and src.crs.to_epsg() is None and d.get("proj:code") is None
                assert CRS.from_wkt(d["proj:wkt2"]).equals(CRS.from_user_input(src.crs.to_wkt()))
            else:
                assert d["proj:code"] == f"EPSG:{src.crs.to_epsg()}" and "proj:wkt2" not in d
            bands = d["raster:bands"]
            assert len(bands) == src.count
            for i, band in enumerate(bands, start=1):
                assert band["nodata"] == src.nodata == NODATA
                assert band["data_type"] == src.dtypes[i - 1] == "float32"
                assert band["unit"] == src.tags(i)["units"]
                stats = band["statistics"]
                a = src.read(i, masked=True)
                assert stats["minimum"] == pytest.approx(float(a.min()))
                assert stats["maximum"] == pytest.approx(float(a.max()))
                assert stats["valid_percent"] == pytest.approx(100.0 * a.count() / a.size)
            assert [b["name"] for b in d["eo:bands"]] == list(src.descriptions)
        assert [b["description"] for b in d["eo:bands"]] == [INFO[n].long_name for n in src.descriptions]
        assert ("spatial_resolution" in bands[0]) == (not grid.is_geographic)
        # projection fields live on the COG asset only, so loaders skip the NetCDF and the PNGs
        assert not any(k.startswith("proj:") for k in item.properties)


def test_item_geometry_is_the_lonlat_footprint(folder):
    _, maps = folder
    for grid, _, _, path in maps.values():
        item = _file_item(path)
        poly = shape(item.geometry)
        assert poly.is_valid and poly.exterior.is_ccw
        lat, lon = grid.cell_centers()
        centres = MultiPoint(np.column_stack([lon.ravel(), lat.ravel()]))
        assert poly.contains(centres)
        w, s, e, n = item.bbox
        assert (w, s, e, n) == pytest.approx(poly.bounds)
        # tight: no edge is more than one cell (at most ~0.12° here) beyond the outermost centres
        assert 0 < lon.min() - w < 0.12 and 0 < e - lon.max() < 0.12
        assert 0 < lat.min() - s < 0.12 and 0 < n - lat.max() < 0.12
    albers = shape(_file_item(maps["albers"][3]).geometry)
    assert len(albers.exterior.coords) > 5  # densified: a projected grid's edges curve in lon/lat


def test_footprint_of_a_lonlat_grid_is_its_bbox():
    grid = get_grid("usa-250x500")
    geometry, bbox = footprint_lonlat(grid)
    assert bbox == list(grid.bbox)
    assert shape(geometry).equals(MultiPoint([(-125, 24.5), (-66.5, 49.5)]).envelope)


@pytest.mark.parametrize(
    "grid",
    [
        GridSpec("pacific", "EPSG:4326", (170, 50, 190, 60), (10, 20), mask_source="none"),
        GridSpec("alaska", "EPSG:3338", (-2_500_000, 300_000, 1_500_000, 2_500_000), (20, 40), mask_source="none"),
    ],
    ids=["lonlat-0-360", "alaska-albers"],
)
def test_footprint_across_the_antimeridian_is_split(grid):
    geometry, bbox = footprint_lonlat(grid)
    assert geometry["type"] == "MultiPolygon"
    geom = shape(geometry)
    assert geom.is_valid and geom.bounds[0] >= -180 and geom.bounds[2] <= 180
    w, s, e, n = bbox
    assert w > e  # STAC: a bbox across the antimeridian has west > east
    lat, lon = grid.cell_centers()
    lon = (lon + 180) % 360 - 180
    assert geom.contains(MultiPoint(np.column_stack([lon.ravel(), lat.ravel()])))
    assert ((lon >= w) | (lon <= e)).all() and s <= lat.min() and lat.max() <= n
    if grid.epsg == 4326:
        assert geom.area == pytest.approx(20 * 10) and bbox == [170, 50, -170, 60]


def test_item_datetimes(folder):
    _, maps = folder
    item = _file_item(maps["geo"][3])
    assert item.datetime is None
    assert item.common_metadata.start_datetime == RANGE[0]
    assert item.common_metadata.end_datetime == dt.datetime(2020, 9, 30, 23, 59, 59, tzinfo=dt.timezone.utc)
    fallback = _file_item(maps["noepsg"][3])
    assert fallback.datetime is not None and fallback.datetime == fallback.common_metadata.created
    assert fallback.properties["geoprom3e:datetime_source"] == "created"
    assert "start_datetime" not in fallback.properties


def test_bad_datetime_range_says_what_is_wrong(folder):
    _, maps = folder
    grid, layers, outputs, _ = maps["geo"]
    with pytest.raises(InputError, match="start is after end"):
        map_item(outputs, grid, list(layers), datetime_range=(dt.date(2021, 1, 2), dt.date(2021, 1, 1)))
    with pytest.raises(InputError, match="not a date"):
        map_item(outputs, grid, list(layers), datetime_range=("2021-01-01", dt.date(2021, 1, 1)))


def test_item_properties_assets_and_links(folder):
    _, maps = folder
    _, layers, outputs, path = maps["albers"]
    item = _file_item(path)
    assert item.id == "div_albers"
    assert item.properties["title"] == "Diversity (albers)"
    assert item.properties["geoprom3e:sigma"] == 2.0 and item.properties["geoprom3e:method"] == "test"
    assert item.properties["geoprom3e:grid"] == maps["albers"][0].name
    assert item.assets["netcdf"].roles == ["data"] and item.assets["netcdf"].href == f"./{outputs.netcdf.name}"
    quick = {k: a for k, a in item.assets.items() if k.startswith("quicklook_")}
    assert sorted(quick) == sorted(f"quicklook_{n}" for n in layers)
    assert "thumbnail" in quick["quicklook_shannon"].roles and all("overview" in a.roles for a in quick.values())
    described = {Path(ln.href).name for ln in item.links if ln.rel == "describedby"}
    assert described == {outputs.settings.name, outputs.manifest.name}
    assert item.assets["settings"].roles == ["metadata"] and item.assets["manifest"].roles == ["metadata"]


def test_items_follow_the_core_spec_offline(folder):
    from stac_pydantic import Catalog, Item

    out, maps = folder
    for _, _, _, path in maps.values():
        doc = json.loads(path.read_text())
        Item.model_validate(doc)
        assert doc["stac_version"] == pystac.get_stac_version()
        assert set(doc["stac_extensions"]) == {
            pystac.extensions.projection.SCHEMA_URI, pystac.extensions.raster.SCHEMA_URI,
            pystac.extensions.eo.SCHEMA_URI,
        }
        assert not any(ln["rel"] == "self" for ln in doc["links"])
    Catalog.model_validate(json.loads((out / CATALOG_NAME).read_text()))


def test_catalog_walks_every_item_and_every_href_resolves(folder, tmp_path):
    out, maps = folder
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # relative hrefs: the folder works from anywhere
    text = "".join(p.read_text() for p in moved.glob("*.json"))
    assert str(out) not in text and str(moved) not in text
    cat = pystac.Catalog.from_file(str(moved / CATALOG_NAME))
    assert cat.title == "test maps"
    items = list(cat.get_items(recursive=True))
    assert sorted(i.id for i in items) == sorted(f"div_{n}" for n in maps)
    for item in items:
        files = [Path(a.get_absolute_href()) for a in item.assets.values()]
        files += [Path(ln.get_absolute_href()) for ln in item.links if ln.rel == "describedby"]
        assert all(f.parent == moved and f.is_file() for f in files), files
        outputs = maps[item.id.removeprefix("div_")][2]
        assert {f.name for f in files} == {p.name for p in outputs.all() if p != outputs.stac}
        assert item.get_root() is cat and item.get_parent() is cat


def test_catalog_is_idempotent_and_follows_the_folder(folder, tmp_path):
    out, maps = folder
    d = tmp_path / "maps"
    shutil.copytree(out, d)
    before = (d / CATALOG_NAME).read_bytes()
    assert update_catalog(d) == d / CATALOG_NAME
    assert (d / CATALOG_NAME).read_bytes() == before  # same folder, same bytes; title kept from the old catalog
    # not items: hidden files (staging, temporaries) and JSON that is not a STAC Item
    (d / ".div_x.stac.json").write_text(json.dumps(json.loads((d / "div_geo.stac.json").read_text())))
    (d / "notes.stac.json").write_text('{"hello": 1}')
    for p in {*maps["geo"][2].all(), maps["geo"][3]}:
        (d / p.name).unlink()
    update_catalog(d)
    ids = sorted(i.id for i in pystac.Catalog.from_file(str(d / CATALOG_NAME)).get_items())
    assert ids == ["div_albers", "div_noepsg"]
    assert "notes" not in (d / CATALOG_NAME).read_text()


def test_catalog_refuses_to_replace_a_foreign_file(tmp_path):
    (tmp_path / CATALOG_NAME).write_text('{"not": "a catalog"}')
    with pytest.raises(OutputError, match="not a STAC Catalog"):
        update_catalog(tmp_path)
    assert json.loads((tmp_path / CATALOG_NAME).read_text()) == {"not": "a catalog"}
    with pytest.raises(OutputError, match="not a folder"):
        update_catalog(tmp_path / CATALOG_NAME)


# upstream: odc-geo still calls shapely.ops.transform
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform\\(\\)' function is deprecated:DeprecationWarning")
def test_odc_stac_loads_each_item_equal_to_the_geotiff(folder):
    import odc.stac

    out, maps = folder
    cat = pystac.Catalog.from_file(str(out / CATALOG_NAME))
    for item in cat.get_items():
        _, layers, outputs, _ = maps[item.id.removeprefix("div_")]
        ds = odc.stac.load([item])
        parsed = odc.stac.parse_item(item).collection.bands  # what odc-stac read from raster:bands
        assert list(ds.data_vars) == list(layers)  # only the COG's bands: NetCDF and PNGs are skipped
        with rasterio.open(outputs.geotiff) as src:
            assert ds.odc.geobox.affine == src.transform and ds.odc.geobox.shape == src.shape
            assert CRS.from_user_input(str(ds.odc.geobox.crs)).equals(CRS.from_user_input(src.crs.to_wkt()))
            for i, name in enumerate(layers, start=1):
                v = ds[name]
                assert v.dtype == np.float32 and v.attrs["nodata"] == src.nodata
                meta = parsed[("data", i)]
                assert (meta.units, meta.nodata) == (src.tags(i)["units"], src.nodata)
                assert meta.data_type == src.dtypes[i - 1]
                assert np.array_equal(v.isel(time=0).values, src.read(i))


def test_item_without_pngs_or_settings_and_with_layer_infos(folder):
    from dataclasses import replace

    from geoprom3e.io import plan_outputs

    _, maps = folder
    grid, layers, outputs, _ = maps["geo"]
    bare = replace(plan_outputs(outputs.geotiff.parent, "bare", list(layers), png=False), settings=None)
    item = map_item(bare, grid, {"richness": INFO["richness"], "shannon": INFO["shannon"]})
    assert sorted(item.assets) == ["data", "manifest", "netcdf", "qgis_style"]
    assert [ln.rel for ln in item.links] == ["describedby"]
    bands = item.assets["data"].to_dict()
    assert [b["name"] for b in bands["eo:bands"]] == ["richness", "shannon"]
    assert [b["unit"] for b in bands["raster:bands"]] == ["count", "1"]
    assert all("statistics" not in b for b in bands["raster:bands"])  # no arrays given
    with pytest.raises(OutputError, match="at least one layer"):
        map_item(bare, grid, [])


def test_concurrent_catalog_updates_keep_every_item(folder, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    out, maps = folder
    doc = json.loads(maps["geo"][3].read_text())

    def add(i):
        write_item(pystac.Item.from_dict({**doc, "id": f"map{i}"}), tmp_path / f"map{i}.stac.json")
        return update_catalog(tmp_path)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(12)))
    ids = sorted(i.id for i in pystac.Catalog.from_file(str(tmp_path / CATALOG_NAME)).get_items())
    assert ids == sorted(f"map{i}" for i in range(12))
