import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
import xarray as xr

from geoprom3e.errors import OutputError
from geoprom3e.grid import get_grid
from geoprom3e.io import NODATA, LayerInfo, write_maps


def _layers(grid, seed=0):
    rng = np.random.default_rng(seed)
    mask = grid.mask()
    a = rng.uniform(0, 4, grid.shape).astype(np.float32)
    a[~mask] = np.nan
    b = np.where(mask, rng.integers(0, 50, grid.shape), np.nan).astype(np.float32)
    return {"shannon": a, "richness": b}


INFO = {"shannon": LayerInfo("Shannon diversity", "1", "viridis"), "richness": LayerInfo("richness", "count", "magma")}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("maps")
    grid = get_grid("usa-250x500")
    layers = _layers(grid)
    outputs = write_maps(out, grid, layers, basename="div", info=INFO, attrs={"sigma": 2.0, "method": "test"},
                         manifest={"kind": "test"}, settings={"sigma": 2.0})
    return grid, layers, outputs


def test_cog_is_valid_and_georeferenced_exactly(written):
    from rio_cogeo.cogeo import cog_validate

    grid, layers, outputs = written
    valid, errors, _ = cog_validate(str(outputs.geotiff))
    assert valid, errors
    with rasterio.open(outputs.geotiff) as ds:
        assert ds.crs.to_epsg() == 4326
        assert ds.transform == grid.transform
        assert ds.shape == grid.shape and ds.count == 2 and ds.dtypes == ("float32", "float32")
        assert ds.descriptions == ("shannon", "richness")
        assert ds.nodata == NODATA
        assert ds.tags()["sigma"] == "2.0" and ds.tags(2)["units"] == "count"
        assert ds.profile["tiled"] and ds.overviews(1)
        a = ds.read(1, masked=True)
        assert np.array_equal(a.mask, np.isnan(layers["shannon"]))
        assert np.allclose(a.filled(np.nan), layers["shannon"], equal_nan=True)


def test_netcdf_reopens_with_centres_and_crs(written):
    grid, layers, outputs = written
    with xr.open_dataset(outputs.netcdf, decode_coords="all") as ds:
        lat, lon = grid.cell_centers()
        assert np.allclose(ds.lat.values, lat[:, 0]) and np.allclose(ds.lon.values, lon[0])
        assert ds.lat.attrs["units"] == "degrees_north" and ds.lon.attrs["units"] == "degrees_east"
        assert ds.rio.crs.to_epsg() == 4326
        assert ds.rio.transform() == grid.transform
        assert ds.attrs["Conventions"] == "CF-1.8" and "geoprom3e" in ds.attrs["history"]
        assert ds.shannon.attrs["long_name"] == "Shannon diversity" and ds.richness.attrs["units"] == "count"
        assert ds.shannon.encoding["_FillValue"] == NODATA and ds.shannon.encoding["zlib"]
        assert ds.shannon.encoding["grid_mapping"] == "spatial_ref"
        assert np.allclose(ds.shannon.values, layers["shannon"], equal_nan=True)
    with rasterio.open(f"netcdf:{outputs.netcdf}:shannon") as src:  # GDAL's own reading of the CRS
        assert src.crs.to_epsg() == 4326
        assert np.allclose(tuple(src.transform)[:6], tuple(grid.transform)[:6])


def test_albers_outputs(tmp_path):
    grid = get_grid("usa-5km-albers")
    outputs = write_maps(tmp_path, grid, _layers(grid), info=INFO, png=False)
    with rasterio.open(outputs.geotiff) as ds:
        assert ds.crs.to_epsg() == 5070 and ds.transform == grid.transform
    with xr.open_dataset(outputs.netcdf, decode_coords="all") as ds:
        assert ds.rio.crs.to_epsg() == 5070
        assert ds.x.attrs["standard_name"] == "projection_x_coordinate"
        lat, _ = grid.cell_centers()
        assert np.allclose(ds.lat.values, lat, atol=1e-4)
    with rasterio.open(f"netcdf:{outputs.netcdf}:richness") as src:
        assert src.crs.to_epsg() == 5070
    assert outputs.pngs == {} and outputs.settings is None


def test_qml_png_manifest_settings(written):
    _, _, outputs = written
    root = ET.parse(outputs.qml).getroot()
    renderer = root.find("./pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
    assert len(root.findall(".//colorrampshader/item")) == 9
    assert set(outputs.pngs) == {"shannon", "richness"}
    for p in outputs.pngs.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    doc = json.loads(outputs.manifest.read_text())
    assert doc["kind"] == "test" and "div.tif" in doc["outputs"] and "write_geotiff" in doc["timings_s"]
    assert json.loads(outputs.settings.read_text()) == {"sigma": 2.0}


def test_existing_outputs_refused_then_overwritten(tmp_path):
    grid = get_grid("usa-250x500").subset((-110, 30, -100, 40))
    write_maps(tmp_path, grid, _layers(grid), png=False)
    with pytest.raises(OutputError, match=r"maps.tif' and \d+ more already exists: pass --overwrite"):
        write_maps(tmp_path, grid, _layers(grid), png=False)
    before = (tmp_path / "maps.tif").stat().st_mtime_ns
    write_maps(tmp_path, grid, _layers(grid, seed=1), png=False, overwrite=True)
    assert (tmp_path / "maps.tif").stat().st_mtime_ns != before


def test_failure_leaves_no_partial_files(tmp_path):
    grid = get_grid("usa-250x500").subset((-110, 30, -100, 40))
    bad = {"shannon": LayerInfo("x", "1", "no-such-colour-map")}
    with pytest.raises(KeyError):
        write_maps(tmp_path, grid, _layers(grid), info=bad)
    assert list(tmp_path.iterdir()) == []


def test_bad_layers_and_unwritable_folder(tmp_path):
    grid = get_grid("usa-250x500")
    with pytest.raises(OutputError, match=r"shape \(2, 2\), the grid is \(250, 500\)"):
        write_maps(tmp_path, grid, {"a": np.zeros((2, 2))})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder|cannot create output folder"):
        write_maps(blocker / "sub", grid, _layers(grid))
    with pytest.raises(OutputError, match="is a file, not a folder"):
        write_maps(blocker, grid, _layers(grid))


def test_block_mean_for_quicklooks():
    from geoprom3e.io.quicklook import block_mean

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    a[0, 0] = np.nan
    assert block_mean(a, 10) is a
    out = block_mean(a, 2)  # k = 2, padded to 4 x 4
    assert out.shape == (2, 2)
    assert out[0, 0] == pytest.approx((1 + 4 + 5) / 3) and out[1, 1] == pytest.approx((10 + 11) / 2)
    assert np.isnan(block_mean(np.full((5, 5), np.nan, np.float32), 2)).all()
