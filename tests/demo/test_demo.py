"""The README's first command: the offline demo writes the four maps, and the planted species light up their habitat."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.demo.run import demo_grid
from geoprom3e.demo.world import FOREST, GRASSLAND, HABITATS, DemoWorld


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    res = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out, res.output


def test_demo_writes_the_four_maps_with_the_grid_georeferencing(demo_out):
    out, text = demo_out
    grid = demo_grid(DemoWorld())
    maps = out / "maps"
    expected = {
        "species_query_Sylvanus_rubripunctatus.tif": ("similarity",),
        "species_query_Campestris_caerulea.tif": ("similarity",),
        "uncertainty.tif": ("sigma_l1", "n_modalities"),
        "diversity.tif": ("shannon", "richness", "shannon_raw", "richness_raw", "n_records", "cell_area_km2"),
    }
    for name, bands in expected.items():
        with rasterio.open(maps / name) as ds:
            assert ds.descriptions == bands
            assert ds.crs.to_epsg() == 4326 and ds.transform.almost_equals(grid.transform)
            assert (ds.height, ds.width) == grid.shape
            tags = json.dumps(ds.tags())
        nc = xr.open_dataset(maps / name.replace(".tif", ".nc"), decode_coords="all")
        assert nc.rio.crs.to_epsg() == 4326 and set(bands) <= set(nc.variables)
        if not name.startswith("diversity"):  # model maps say plainly what is synthetic
            assert "SYNTHETIC DEMO" in tags and "SYNTHETIC DEMO" in nc.attrs.get("note", "")
    assert "maps:" in text and "synthetic" in text


def _habitat_means(path, hab):
    with rasterio.open(path) as ds:
        v = ds.read(1, masked=True).astype(float).filled(np.nan)
    return [float(np.nanmean(np.where(hab == h, v, np.nan))) for h in range(len(HABITATS))]


def test_planted_species_light_up_their_own_habitat(demo_out):
    out, _ = demo_out
    world = DemoWorld()
    hab = world.habitat_map(demo_grid(world))
    forest_sp = _habitat_means(out / "maps" / "species_query_Sylvanus_rubripunctatus.tif", hab)
    grass_sp = _habitat_means(out / "maps" / "species_query_Campestris_caerulea.tif", hab)
    assert forest_sp[FOREST] > forest_sp[GRASSLAND] + 0.1
    assert grass_sp[GRASSLAND] > grass_sp[FOREST] + 0.05
    # richness follows what was planted: 4 forest species, 2 grassland species
    with rasterio.open(out / "maps" / "diversity.tif") as ds:
        rich = ds.read(4, masked=True).astype(float).filled(np.nan)
    assert np.nanmax(np.where(hab == FOREST, rich, np.nan)) == 4
    assert np.nanmax(np.where(hab == GRASSLAND, rich, np.nan)) == 2
    summary = json.loads((out / "demo.summary.json").read_text())
    assert set(summary["habitat_contrast"]) == {"Sylvanus rubripunctatus", "Campestris caerulea"}


def test_cells_without_a_chip_fall_back_to_location(demo_out):
    out, _ = demo_out
    with rasterio.open(out / "maps" / "uncertainty.tif") as ds:
        n_mod = ds.read(2, masked=True).compressed()
    assert set(np.unique(n_mod).tolist()) == {1.0, 2.0}  # cloudy cells had loc only
    assert 0 < (n_mod == 1).sum() < 0.2 * n_mod.size
    manifest = json.loads((out / "maps" / "uncertainty.manifest.json").read_text())
    assert manifest["counts"]["failed_cells"] == (n_mod == 1).sum()
    assert all(f["modality"] == "sat" and f["reason"] for f in manifest["failures"])


def test_rerun_reuses_world_cache_and_model(demo_out):
    out, _ = demo_out
    before = (out / "model" / "model.safetensors").stat().st_mtime_ns
    res = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == before
    assert json.loads((out / "demo.summary.json").read_text())["seconds"]["train"] < 5


def test_demo_hands_off_a_command_that_maps_a_photo_from_its_cache(demo_out, tmp_path):
    import shlex

    out, text = demo_out
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("geoprom3e map-species ")]
    assert len(lines) == 1, text
    args = shlex.split(lines[0])[1:]
    args[args.index("--out") + 1] = str(tmp_path / "mine")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    (tif,) = (tmp_path / "mine").glob("species_*.tif")
    # the same photo, cache, model and encoders give the demo's own map
    demo_map = out / "maps" / tif.name
    with rasterio.open(tif) as a, rasterio.open(demo_map) as b:
        np.testing.assert_allclose(a.read(1), b.read(1), atol=1e-6)
        assert a.transform == b.transform


def test_demo_habitat_probe_far_above_chance(demo_out):
    out, text = demo_out
    rows = {r["representation"]: r for r in json.loads((out / "probe" / "probe_habitat.json").read_text())["rows"]}
    assert rows["[μ]"]["accuracy"] > rows["chance (majority class)"]["accuracy"] + 0.3
    assert "| representation | kind | features |" in text
