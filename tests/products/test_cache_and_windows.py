"""The georeferenced cache, any window of it mapped, grids compared by geometry, fused products computed once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.engine import EmbeddingCache, FuseSettings, fuse_grid
from geoprom3e.grid import get_grid
from geoprom3e.model import ProM3E
from geoprom3e.products import similarity_from_cache, uncertainty_map
from geoprom3e.products.base import default_cache
from geoprom3e.testing.engine import FourierLocInput
from tests.products.conftest import BBOX, GRID, build_cache

SUB = (-105.0, 38.7, -104.0, 39.3)


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.mark.parametrize("grid", [GRID, get_grid("usa-5km-albers").subset((-1.0e6, 1.6e6, -0.96e6, 1.63e6))],
                         ids=["lonlat", "albers"])
def test_cache_opens_in_xarray_with_the_grids_crs_and_transform(grid, tmp_path):
    import rioxarray  # noqa: F401

    build_cache(tmp_path / "c", grid, modalities=("loc",))
    ds = xr.open_zarr(tmp_path / "c" / "embeddings.zarr", consolidated=True)
    y, x = ("lat", "lon") if grid.epsg == 4326 else ("y", "x")
    assert ds["loc_embedding"].dims == (y, x, "feature") and ds["loc_present"].dims == (y, x)
    cx, cy = grid.cell_centers_xy()
    np.testing.assert_allclose(ds[x].values, cx)
    np.testing.assert_allclose(ds[y].values, cy)
    assert ds.rio.crs == rasterio.crs.CRS.from_user_input(grid.crs)
    assert ds.rio.transform().almost_equals(grid.transform)
    assert json.loads(ds["loc_embedding"].attrs["seed"]) == 0 and ds["loc_embedding"].attrs["encoder"] == "fourier-test"
    np.testing.assert_array_equal(ds["loc_present"].values, grid.mask())
    # the cache knows its grid: no grid argument needed to open it
    assert EmbeddingCache(tmp_path / "c").grid == grid


def test_a_window_map_equals_that_window_of_the_full_map(cache_dir, model_dir, tmp_path):
    sub = get_grid("usa-250x500").subset(SUB)
    full = uncertainty_map(cache_dir, out_dir=tmp_path / "full", checkpoint=model_dir,
                           fuse=FuseSettings(("sat", "loc")))
    part = uncertainty_map(cache_dir, grid=sub, out_dir=tmp_path / "part", checkpoint=model_dir,
                           fuse=FuseSettings(("sat", "loc")))
    r0, c0 = sub.window_in(GRID)
    a, b = full.maps[0].dataset, part.maps[0].dataset
    np.testing.assert_array_equal(b["sigma_l1"].values, a["sigma_l1"].values[r0:r0 + sub.rows, c0:c0 + sub.cols])
    with rasterio.open(part.maps[0].outputs.geotiff) as ds:
        assert ds.transform.almost_equals(sub.transform) and (ds.height, ds.width) == sub.shape
    assert b.rio.crs.to_epsg() == 4326
    # similarity too, from the same fused products (named for what they are, not by hash)
    cache = EmbeddingCache(cache_dir)
    group = fuse_grid(cache, ProM3E.from_checkpoint(model_dir), FuseSettings(("sat", "loc")), decode=["image"])
    assert group.startswith("sat-loc_n5_seed0_model-")
    q = np.random.default_rng(0).normal(size=(2, 512))
    s_full = similarity_from_cache(cache, group, q)
    s_sub = similarity_from_cache(cache, group, q, window=cache.window(sub))
    np.testing.assert_array_equal(s_sub, s_full[:, r0:r0 + sub.rows, c0:c0 + sub.cols])


def test_same_geometry_under_another_name_is_served_and_other_grids_get_one_line(cache_dir, model_dir, tmp_path):
    args = ["uncertainty-map", "--cache", cache_dir, "--checkpoint", model_dir, "--visible", "sat,loc"]
    # the cache was built for the subset named usa-250x500[...]; the same cells under the preset's --bbox work
    code, out = _run(*args, "--grid", "usa-250x500", "--bbox", *BBOX, "--out", tmp_path / "a")
    assert code == 0, out
    # --cache alone: the cache's own grid
    code, out = _run(*args, "--out", tmp_path / "b")
    assert code == 0, out
    code, out = _run(*args, "--grid", "usa-500x1000", "--bbox", *BBOX, "--out", tmp_path / "c")
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert "not a window of the cache's grid 'usa-250x500[-105.4,38.6,-103.6,39.4]'" in out and "bbox (" in out
    code, out = _run(*args, "--grid", "usa-250x500", "--bbox", -110, 30, -100, 40, "--out", tmp_path / "d")
    assert code == 2 and "reaches outside the cache's grid" in out
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_a_maps_settings_json_is_a_grid(cache_dir, model_dir, tmp_path):
    args = ["uncertainty-map", "--cache", cache_dir, "--checkpoint", model_dir, "--visible", "sat,loc"]
    code, out = _run(*args, "--grid", "usa-250x500", "--bbox", *SUB, "--out", tmp_path / "a")
    assert code == 0, out
    code, out = _run(*args, "--grid", tmp_path / "a" / "uncertainty.settings.json", "--out", tmp_path / "b")
    assert code == 0, out
    with rasterio.open(tmp_path / "a" / "uncertainty.tif") as a, rasterio.open(tmp_path / "b" / "uncertainty.tif") as b:
        assert a.transform == b.transform and np.array_equal(a.read(), b.read())
    other = tmp_path / "train.settings.json"
    other.write_text(json.dumps({"command": "train", "epochs": 3}))
    code, out = _run(*args, "--grid", other, "--out", tmp_path / "c")
    assert code == 2 and "neither a grid file" in out and "train.settings.json" in out
    assert not (tmp_path / "c").exists()


def test_subset_names_are_exact_and_path_safe():
    g = get_grid("usa-1km-albers").subset((-2038000, 1000000, -1000000, 2000000))
    assert g.name == "usa-1km-albers[-2038000,1000000,-1000000,2000000]"
    assert get_grid("usa-250x500").subset((-106.2, 38, -102.8, 40)).name == "usa-250x500[-106.2,38,-102.8,40]"
    root = default_cache("x").parent
    for bad in ("..", "../../etc", "/abs", ""):
        p = default_cache(bad)
        assert p.parent == root and p.name not in (".", "..")


def test_uncertainty_after_species_reuses_the_fused_products(cache_dir, model_dir):
    cache = EmbeddingCache(cache_dir)
    model = ProM3E.from_checkpoint(model_dir)
    events = []
    fuse_grid(cache, model, FuseSettings(("sat", "loc"), seed=3), decode=["image"], progress=events.append)
    assert sum(e.advance for e in events if e.stage == "fuse") == int(GRID.mask().sum())
    events.clear()
    fuse_grid(cache, model, FuseSettings(("sat", "loc"), seed=3), progress=events.append)  # what uncertainty needs
    fuse_grid(cache, model, FuseSettings(("sat", "loc"), seed=3), decode=["image"], progress=events.append)
    assert not [e for e in events if e.advance], "nothing is fused twice"
    # a reconstruction asked for later is added to the same product, without redoing the core
    fuse_grid(cache, model, FuseSettings(("sat", "loc"), seed=3), decode=["text"], progress=events.append)
    assert sum(e.advance for e in events if e.stage == "fuse") == int(GRID.mask().sum())
    assert "recon_text" in cache.root[f"fused/{fuse_grid(cache, model, FuseSettings(('sat', 'loc'), seed=3))}"]


def test_fuse_settings_validate_themselves():
    from geoprom3e.errors import ConfigError

    for bad in ({"n_samples": -1}, {"seed": -2}, {"visible": ("sat", "nope")}, {"visible": ()}):
        with pytest.raises(ConfigError):
            FuseSettings(**bad)
    assert FuseSettings(visible="loc,sat").visible == ("loc", "sat")


def test_embedding_a_window_into_the_presets_cache(tmp_path):
    """A window embedded into a cache made for the whole preset: other windows can be added and mapped later."""
    from geoprom3e.engine import embed_grid

    usa = get_grid("usa-250x500")
    embed_grid(GRID, tmp_path / "usa", [FourierLocInput()], chunk_size=32, cache_grid=usa)
    cache = EmbeddingCache(tmp_path / "usa")
    assert cache.grid == usa
    emb, present = cache.read_all("loc", cache.window(GRID))
    assert present[GRID.mask()].all()
    sub = get_grid("usa-250x500").subset((-90, 35, -89, 36))
    rep = embed_grid(sub, tmp_path / "usa", [FourierLocInput()])
    assert rep.chunks_done == 1


def test_bad_caches_and_outputs_get_one_line_and_nothing_is_written(cache_dir, model_dir, tmp_path):
    args = ["uncertainty-map", "--checkpoint", model_dir, "--visible", "sat,loc"]
    not_cache = tmp_path / "photos"
    not_cache.mkdir()
    old = tmp_path / "old" / "embeddings.zarr"
    old.mkdir(parents=True)
    (old / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                               "attributes": {"format": "geoprom3e-embedding-cache/1"}}))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["--cache", not_cache], "is not a geoprom3e embedding cache (it holds no embeddings.zarr)"),
        (["--cache", tmp_path / "old"], "older geoprom3e (geoprom3e-embedding-cache/1)"),
        (["--cache", a_file], "is a file, not a cache folder"),
        (["--cache", cache_dir, "--out", a_file], "is a file, not a folder"),
    ]
    for extra, needle in cases:
        out_dir = [] if "--out" in extra else ["--out", tmp_path / "maps"]
        code, out = _run(*args, *extra, *out_dir)
        assert code == 2 and len(out.strip().splitlines()) == 1 and needle in out, (extra, out)
    assert not (tmp_path / "maps").exists() and a_file.read_text() == "x"


def test_uncertainty_measures_are_labelled_and_research_ones_computed(cache_dir, model_dir, tmp_path):
    from geoprom3e.cli.engine import MEASURE_NAMES
    from geoprom3e.model.uncertainty import MEASURES

    assert tuple(MEASURES) == MEASURE_NAMES
    fuse = FuseSettings(("sat", "loc"))
    pub = uncertainty_map(cache_dir, out_dir=tmp_path / "pub", checkpoint=model_dir, fuse=fuse, png=False)
    with rasterio.open(pub.maps[0].outputs.geotiff) as ds:
        assert ds.descriptions == ("sigma_l1", "n_modalities") and ds.tags()["published"] == "True"
        assert "has not been shown" in ds.tags()["caveat"]
    res = uncertainty_map(cache_dir, out_dir=tmp_path / "disp", checkpoint=model_dir, fuse=fuse, png=False,
                          measure="dispersion")
    d = res.maps[0].dataset["dispersion"].values
    mask = GRID.mask()
    assert np.isfinite(d[mask]).all() and np.isnan(d[~mask]).all() and (d[mask] >= 0).all() and (d[mask] <= 1).all()
    with rasterio.open(res.maps[0].outputs.geotiff) as ds:
        assert ds.descriptions == ("dispersion", "n_modalities") and ds.tags()["published"] == "False"
    code, out = _run("uncertainty-map", "--cache", cache_dir, "--checkpoint", model_dir, "--visible", "sat,loc",
                     "--measure", "recon_sigma", "--out", tmp_path / "rs")
    assert code == 2 and "model.error_head" in out and not (tmp_path / "rs").exists()
