"""The demo's representation steps: the habitat raster is a proper target, and the habitat probe on ProM3E's
fused tokens is far above chance (the demo run itself, with a shortened training, is marked slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import yaml

from geoprom3e.demo.run import demo_grid
from geoprom3e.demo.world import HABITATS, DemoWorld, write_habitat_raster
from geoprom3e.products.probe import read_target
from geoprom3e.resources import recipe_path


def test_habitat_raster_is_a_georeferenced_target(tmp_path):
    world = DemoWorld()
    grid = demo_grid(world)
    p = write_habitat_raster(world, grid, tmp_path / "habitat.tif")
    with rasterio.open(p) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.transform.almost_equals(grid.transform) and ds.nodata == 255
        assert ds.descriptions == ("habitat",) and ds.tags(1)["classes"] == "0=forest,1=grassland"
    t = read_target(str(p), grid)
    hab = world.habitat_map(grid)
    mask = grid.mask()
    assert t.task == "classify" and t.classes == ["0", "1"] and len(HABITATS) == 2
    assert np.array_equal(t.values[mask], hab[mask]) and (t.values[~mask] == -1).all()


@pytest.mark.slow
def test_demo_probe_on_fused_tokens_far_above_chance(tmp_path):
    train = yaml.safe_load(recipe_path("train/demo.yaml").read_text())
    train["train"]["epochs"] = 3
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    demo = yaml.safe_load(recipe_path("demo/demo.yaml").read_text())
    demo["training"]["recipe"] = str(tmp_path / "train.yaml")
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo))
    from geoprom3e.demo import run_demo

    res = run_demo(tmp_path / "out", recipe=tmp_path / "demo.yaml")
    assert {"embedding:mu", "embedding:register1", "probe"} <= set(res.maps)
    doc = json.loads(res.maps["probe"].with_suffix(".json").read_text())
    rows = {r["representation"]: r for r in doc["rows"]}
    chance = rows["chance (majority class)"]["accuracy"]
    for name in ("[μ]", "all tokens"):
        assert rows[name]["accuracy"] > chance + 0.3 and rows[name]["accuracy"] > 0.9, rows[name]
    with rasterio.open(res.maps["embedding:mu"]) as ds:
        assert ds.count == 3 and ds.crs.to_epsg() == 4326
