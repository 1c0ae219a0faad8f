"""Cell areas (exact on the ellipsoid, constant on equal-area grids) and how they reach the outputs."""

import json
import xml.etree.ElementTree as ET

import netCDF4
import numpy as np
import pytest
import rasterio
from pyproj import Geod

from geoprom3e.grid import get_grid
from geoprom3e.grid.spec import GridSpec
from geoprom3e.maps.area import cell_area, cell_area_method
from geoprom3e.maps.diversity import DiversitySettings
from geoprom3e.products.diversity import write_diversity_map
from tests.conftest import shared_path

#: Surface area of the WGS84 ellipsoid (NIMA TR8350.2 / Moritz 1980 authalic-sphere value), km².
WGS84_AREA_KM2 = 510_065_621.724


def test_global_grid_sums_to_the_ellipsoid_area():
    g = GridSpec("globe", "EPSG:4326", (-180, -90, 180, 90), (180, 360), mask_source="none")
    area = cell_area(g)
    assert area.method == "ellipsoidal (exact, WGS 84)"
    assert area.km2.sum() == pytest.approx(WGS84_AREA_KM2, rel=1e-9)


def test_usa_cells_shrink_northwards_and_match_geodesic_areas():
    g = get_grid("usa-250x500")
    km2 = cell_area(g).km2
    assert np.all(km2 == km2[:, :1])  # one value per row
    assert km2[-1, 0] / km2[0, 0] == pytest.approx(1.39, abs=0.01)  # the ≈1.40× of the issue
    geod = Geod(ellps="WGS84")
    w, _, _, n = g.bbox
    dx, dy = g.res
    for r in (0, 124, 249):  # tiny cells: geodesic edges ≈ parallels
        top, bottom = n - r * dy, n - (r + 1) * dy
        ref, _ = geod.polygon_area_perimeter([w, w + dx, w + dx, w], [top, top, bottom, bottom])
        assert km2[r, 0] == pytest.approx(abs(ref) / 1e6, rel=1e-5)


def test_equal_area_and_other_projections():
    albers = get_grid("usa-5km-albers")
    area = cell_area(albers)
    assert area.method == "constant (equal-area CRS: Albers Equal Area)" == cell_area_method(albers)
    assert np.all(area.km2 == 25.0)
    merc = GridSpec("merc", "EPSG:3857", (-1.2e7, 3.0e6, -1.1e7, 5.0e6), (20, 10), mask_source="none")
    area = cell_area(merc)
    assert area.method.startswith("projected")
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    w, _, _, n = merc.bbox
    dx, dy = merc.res
    xs, ys = [w, w + dx, w + dx, w], [n, n, n - dy, n - dy]
    lon, lat = t.transform(xs, ys)
    ref, _ = Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)
    assert area.km2[0, 0] == pytest.approx(abs(ref) / 1e6, rel=2e-3)  # scale factor at the centre vs. exact


def test_outputs_carry_area_bounds_cell_measures_coverage_and_transparent_qml(tmp_path):
    path = shared_path("data", "inat_butterflies_western_us", "iNat_utah.csv")
    g = get_grid("usa-250x500")
    run = write_diversity_map([path], tmp_path, g, DiversitySettings(per_area=True), png=False, checksums=False)
    with netCDF4.Dataset(run.outputs.netcdf) as ds:
        assert ds["shannon"].cell_measures == "area: cell_area_km2"
        assert ds["cell_area_km2"].standard_name == "cell_area" and ds["cell_area_km2"].units == "km2"
        assert ds["lat"].bounds == "lat_bnds" and ds["lon"].bounds == "lon_bnds"
        lat_b, lon_b = ds["lat_bnds"][:], ds["lon_bnds"][:]
        assert lat_b.shape == (250, 2) and lon_b.shape == (500, 2)
        assert lat_b[0].tolist() == [49.5, pytest.approx(49.4)] and lon_b[-1, 1] == pytest.approx(-66.5)
        assert np.allclose(lat_b[1:, 0], lat_b[:-1, 1])  # contiguous cells
        assert "cell_measures" not in ds["cell_area_km2"].ncattrs()
    with rasterio.open(run.outputs.geotiff) as src:
        names = list(src.descriptions)
        area = src.read(names.index("cell_area_km2") + 1, masked=True)
        n_rec = src.read(names.index("n_records") + 1, masked=True)
        rich = src.read(names.index("richness_raw") + 1, masked=True)
        dens = src.read(names.index("richness_per_km2") + 1, masked=True)
    mask = g.mask()
    assert np.array_equal(~area.mask, mask) and np.allclose(area[mask], cell_area(g).km2[mask], rtol=1e-6)
    # coverage: 0 in mask cells without records, no data off the mask, > 0 exactly where richness exists
    assert np.array_equal(~n_rec.mask, mask) and (n_rec == 0).sum() > 0
    assert np.array_equal((n_rec > 0).filled(False), ~rich.mask)
    assert np.allclose(dens[~rich.mask], (rich / area)[~rich.mask], rtol=1e-6)
    root = ET.parse(run.outputs.qml).getroot()
    entry = root.find(".//rasterTransparency/singleValuePixelList/pixelListEntry")
    assert entry.get("min") == "0" and entry.get("max") == "0" and entry.get("percentTransparent") == "100"
    manifest = json.loads(run.outputs.manifest.read_text())
    assert manifest["counts"]["cell_area_method"] == "ellipsoidal (exact, WGS 84)"


def test_albers_netcdf_has_xy_bounds_and_constant_area(tmp_path):
    from geoprom3e.io.netcdf import write_netcdf

    g = get_grid("usa-5km-albers")
    area = cell_area(g)
    values = np.where(g.mask(), 1.0, np.nan)
    path = write_netcdf(tmp_path / "a.nc", g, {"richness": values, "cell_area_km2": area.km2})
    with netCDF4.Dataset(path) as ds:
        assert ds["x"].bounds == "x_bnds" and ds["y"].bounds == "y_bnds"
        x_b, y_b = ds["x_bnds"][:], ds["y_bnds"][:]
        assert np.allclose(x_b[:, 1] - x_b[:, 0], 5000.0) and np.allclose(y_b[:, 0] - y_b[:, 1], 5000.0)
        assert x_b[0, 0] == g.bbox[0] and y_b[0, 0] == g.bbox[3]
        assert ds["richness"].cell_measures == "area: cell_area_km2"
        assert np.all(ds["cell_area_km2"][:] == 25.0)
