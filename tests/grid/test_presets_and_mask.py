import json
import time

import numpy as np
import pytest
import shapely

from geoprom3e.errors import GridError
from geoprom3e.grid import conus_outline, get_grid, grid_report, list_grids, load_grid_file


def test_presets_listed():
    assert list_grids() == ["usa-1000x2000", "usa-1km-albers", "usa-250x500", "usa-500x1000", "usa-5km-albers"]
    assert get_grid("usa-1000x2000").shape == (1000, 2000)
    assert get_grid("usa-1000x2000").bbox == get_grid("usa-250x500").bbox


def test_unknown_grid_lists_the_presets():
    with pytest.raises(GridError, match="unknown grid 'usa-1x1': choose one of usa-1000x2000, usa-1km-albers"):
        get_grid("usa-1x1")


def test_user_grid_file(tmp_path):
    p = tmp_path / "az.json"
    p.write_text(json.dumps({"crs": "EPSG:4326", "bbox": [-115, 31, -109, 37], "shape": [60, 60], "mask": "none"}))
    g = get_grid(str(p))
    assert g.name == "az" and g.shape == (60, 60) and g.mask().all()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GridError, match="cannot be parsed"):
        load_grid_file(bad)


def test_mask_equals_vectorised_point_in_polygon():
    outline = conus_outline()
    for name in ("usa-250x500", "usa-5km-albers"):
        g = get_grid(name)
        lat, lon = g.cell_centers()
        expected = shapely.contains_xy(outline, lon, lat)
        assert np.array_equal(g.mask(), expected), name


def test_mask_known_cells_and_speed():
    g = get_grid("usa-1000x2000")
    t = time.perf_counter()
    m = g.mask()
    assert time.perf_counter() - t < 5.0
    # Kansas is inside, the Gulf of Mexico and Ontario are not
    for (lat, lon), inside in [((38.5, -98.0), True), ((26.0, -90.0), False), ((49.0, -80.0), False)]:
        r, c = g.cell_of([lat], [lon])
        assert m[r[0], c[0]] == inside
    assert 0.5 < m.mean() < 0.6


def test_mask_from_geojson_file(tmp_path):
    p = tmp_path / "square.geojson"
    p.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[-110, 35], [-100, 35], [-100, 45], [-110, 45], [-110, 35]]]}}))
    g = get_grid("usa-250x500")
    from geoprom3e.grid import GridSpec

    m = GridSpec(g.name, g.crs, g.bbox, g.shape, mask_source=str(p)).mask()
    lat, lon = g.cell_centers()
    expected = (lat > 35) & (lat < 45) & (lon > -110) & (lon < -100)
    assert np.array_equal(m, expected)


def test_grid_report_lines():
    text = grid_report(get_grid("usa-250x500"))
    assert "250 rows × 500 cols = 125,000 cells" in text
    assert "10.40 km × 11.10 km" in text
    assert "70,106 cells inside" in text
