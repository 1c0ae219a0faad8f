"""diversity_map as a product: a Dataset with a CRS, and a STAC item dated by the records behind the map."""

from __future__ import annotations

import pystac

from geoprom3e.grid import get_grid
from geoprom3e.products import diversity_map


def test_diversity_product_dataset_and_stac_date_range(tmp_path):
    csv = tmp_path / "obs.csv"
    csv.write_text("latitude,longitude,species,observed_on\n"
                   "39.0,-105.0,A a,2019-06-02\n39.0,-105.0,B b,2021-07-30T10:00:00\n38.9,-104.9,A a,2020-01-15\n"
                   "38.8,-104.8,C c,\n")
    grid = get_grid("usa-250x500").subset((-105.4, 38.6, -103.6, 39.4))
    res = diversity_map([csv], grid, out_dir=tmp_path / "out", png=False)
    ds = res.maps[0].dataset
    assert ds.rio.crs.to_epsg() == 4326 and int(ds["richness_raw"].max()) == 2
    item = pystac.Item.from_file(str(res.maps[0].outputs.stac))
    assert item.properties["start_datetime"].startswith("2019-06-02")
    assert item.properties["end_datetime"].startswith("2021-07-30T23:59:59")
    cat = pystac.Catalog.from_file(str(tmp_path / "out" / "catalog.json"))
    assert [i.id for i in cat.get_items()] == ["diversity"]
