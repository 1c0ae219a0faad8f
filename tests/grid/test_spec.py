import math

import numpy as np
import pytest

from geoprom3e.errors import GridError
from geoprom3e.grid import GridSpec, get_grid, grid_from_options


def test_usa_250x500_matches_design():
    g = get_grid("usa-250x500")
    assert g.crs == "EPSG:4326"
    assert g.bbox == (-125.0, 24.5, -66.5, 49.5)
    assert g.shape == (250, 500)
    assert g.res == pytest.approx((0.117, 0.1))
    t = g.transform
    assert (t.a, t.b, t.c, t.d, t.e, t.f) == pytest.approx((0.117, 0, -125.0, 0, -0.1, 49.5))


def test_cell_centres_follow_design_formula():
    g = get_grid("usa-250x500")
    lat, lon = g.cell_centers()
    assert lat.shape == lon.shape == (250, 500)
    for r, c in [(0, 0), (17, 301), (249, 499)]:
        assert lat[r, c] == pytest.approx(49.5 - (r + 0.5) * 0.1)
        assert lon[r, c] == pytest.approx(-125.0 + (c + 0.5) * 0.117)


def test_cell_of_matches_design_formula_on_random_points():
    g = get_grid("usa-250x500")
    rng = np.random.default_rng(1)
    lat = rng.uniform(24.5, 49.5, 5000)
    lon = rng.uniform(-125.0, -66.5, 5000)
    r, c = g.cell_of(lat, lon)
    assert np.array_equal(r, np.floor((49.5 - lat) / 0.1).astype(int))
    assert np.array_equal(c, np.floor((lon + 125.0) / 0.117).astype(int))


def test_cell_of_round_trips_centres_and_flags_outside():
    g = get_grid("usa-500x1000")
    lat, lon = g.cell_centers()
    r, c = g.cell_of(lat.ravel(), lon.ravel())
    rr, cc = np.indices(g.shape)
    assert np.array_equal(r, rr.ravel()) and np.array_equal(c, cc.ravel())
    r, c = g.cell_of([50.0, 40.0, 24.4, 40.0, np.nan], [-100.0, -130.0, -100.0, -66.0, -100.0])
    assert r.tolist() == [-1] * 5 and c.tolist() == [-1] * 5
    # north and west edges are inside, south and east edges outside
    r, c = g.cell_of([49.5, 24.5], [-125.0, -66.5])
    assert (r[0], c[0]) == (0, 0) and r[1] == -1


def test_albers_grid_reprojects_points():
    g = get_grid("usa-5km-albers")
    assert g.epsg == 5070 and not g.is_geographic
    lat, lon = g.cell_centers()
    r, c = g.cell_of(lat[::37, ::41].ravel(), lon[::37, ::41].ravel())
    rr, cc = np.indices(g.shape)
    assert np.array_equal(r, rr[::37, ::41].ravel())
    assert np.array_equal(c, cc[::37, ::41].ravel())
    assert g.cell_size_km() == pytest.approx((5.0, 5.0))


def test_cell_size_km_at_centre():
    ew, ns = get_grid("usa-250x500").cell_size_km()
    assert ew == pytest.approx(0.117 * 111.32 * math.cos(math.radians(37.0)), rel=1e-6)
    assert ns == pytest.approx(11.1, rel=0.01)


def test_subset_keeps_cells_whose_centres_fall_inside():
    g = get_grid("usa-250x500")
    sub = g.subset((-110.0, 30.0, -100.0, 40.0))
    lat, lon = sub.cell_centers()
    assert lat.min() > 30.0 and lat.max() < 40.0 and lon.min() > -110.0 and lon.max() < -100.0
    # same cells as the parent: the parent's centres inside the bbox
    plat, plon = g.cell_centers()
    inside = (plat > 30) & (plat < 40) & (plon > -110) & (plon < -100)
    assert inside.sum() == sub.n_cells
    assert np.allclose(np.sort(lat.ravel()), np.sort(plat[inside]))
    assert np.array_equal(sub.mask(), g.mask()[inside].reshape(sub.shape))


def test_bad_specs_raise_one_line_errors():
    with pytest.raises(GridError, match=r"\(-66, 24, -125, 50\): west must be < east"):
        GridSpec("x", "EPSG:4326", (-66, 24, -125, 50), (10, 10))
    with pytest.raises(GridError, match="south must be < north"):
        GridSpec("x", "EPSG:4326", (-125, 50, -66, 24), (10, 10))
    with pytest.raises(GridError, match="not recognised"):
        GridSpec("x", "EPSG:999999", (0, 0, 1, 1), (10, 10))
    with pytest.raises(GridError, match="more than"):
        GridSpec("x", "EPSG:4326", (-125, 24, -66, 50), (100_000, 100_000))
    with pytest.raises(GridError, match="holds no cell centre"):
        get_grid("usa-250x500").subset((0.0, 0.0, 1.0, 1.0))


def test_grid_from_options_custom_and_subset():
    g = grid_from_options(bbox=(-125, 24.5, -66.5, 49.5), res=(0.25, 0.25))
    assert g.shape == (100, 234) and g.bbox[2] == pytest.approx(-66.5)
    g = grid_from_options(bbox=(0, 0, 10, 5), shape=(5, 10), crs="EPSG:4326", mask="none")
    assert g.res == (1.0, 1.0) and g.mask().all()
    g = grid_from_options("usa-250x500", bbox=(-110, 30, -100, 40))
    assert g.shape == (100, 86)
    with pytest.raises(GridError, match="either --shape or --res"):
        grid_from_options(bbox=(0, 0, 1, 1), shape=(1, 1), res=(1, 1))
    with pytest.raises(GridError, match="need --bbox"):
        grid_from_options(shape=(10, 10))


def test_to_dict_round_trip():
    g = get_grid("usa-1km-albers")
    assert GridSpec.from_dict(g.to_dict()) == g
    with pytest.raises(GridError, match="unknown keys"):
        GridSpec.from_dict({**g.to_dict(), "colour": "red"})
