"""The users' own words: `geoprom3e map-species photo.jpg` and `geoprom3e uncertainty-map` exactly as typed.

Runs the installed CLI in a fresh process, offline, with the published model id (MVRL/ProM3E) and image encoder
(hf-hub:MVRL/taxabind-vit-b-16) resolved from a Hugging Face cache folder that holds weights of the same
architectures saved locally, and the default cache location $GEOPROM3E_CACHE/usa-250x500.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoprom3e.demo.world import DemoWorld, make_photo
from geoprom3e.testing.encoders import make_hf_cache
from tests.products.conftest import build_cache


@pytest.fixture(scope="module")
def home(tmp_path_factory, model_dir):
    import importlib.util

    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip is not installed (the default image encoder): run `.ci/setup --dev`")
    from geoprom3e.testing.encoders import save_small_open_clip

    d = tmp_path_factory.mktemp("user")
    build_cache(d / "caches" / "usa-250x500")
    make_hf_cache(d / "hub", "MVRL/ProM3E", model_dir)
    make_hf_cache(d / "hub", "MVRL/taxabind-vit-b-16", save_small_open_clip(d / "openclip"))
    world = DemoWorld()
    for folder in ("a", "b"):
        (d / "work" / folder).mkdir(parents=True)
        make_photo(world.species[0 if folder == "a" else 1], np.random.default_rng(1)).save(
            d / "work" / folder / "IMG_0001.jpg")
    return d


def _geoprom3e(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GEOPROM3E_CACHE": str(home / "caches"), "HF_HUB_CACHE": str(home / "hub"),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "geoprom3e", *args], cwd=cwd or home / "work", env=env,
                          capture_output=True, text=True, timeout=600)


def test_map_species_photo_as_typed(home):
    res = _geoprom3e(home, "map-species", "a/IMG_0001.jpg")
    assert res.returncode == 0, res.stderr
    tif = home / "work" / "maps" / "species_IMG_0001.tif"
    assert f"wrote maps/{tif.name}" in res.stdout or str(tif) in res.stdout
    with rasterio.open(tif) as ds:
        assert ds.descriptions == ("similarity",) and ds.crs.to_epsg() == 4326
        assert np.isfinite(ds.read(1, masked=True).compressed()).all()
    again = _geoprom3e(home, "map-species", "a/IMG_0001.jpg")
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0 and "--overwrite" in again.stderr


def test_uncertainty_map_as_typed(home):
    res = _geoprom3e(home, "uncertainty-map", "--visible", "sat,loc")
    assert res.returncode == 0, res.stderr
    assert (home / "work" / "maps" / "uncertainty.tif").is_file()
    plain = _geoprom3e(home, "uncertainty-map", "--out", "plain")  # not one extra option: sat,loc,env default
    assert plain.returncode == 0, plain.stderr


def test_photos_with_the_same_stem_get_their_own_maps(home, tmp_path):
    res = _geoprom3e(home, "map-species", "a/IMG_0001.jpg", "b/IMG_0001.jpg", "--out", str(tmp_path / "two"))
    assert res.returncode == 0, res.stderr
    a, b = tmp_path / "two" / "species_a_IMG_0001.tif", tmp_path / "two" / "species_b_IMG_0001.tif"
    with rasterio.open(a) as da, rasterio.open(b) as db:
        assert not np.array_equal(da.read(1), db.read(1))
        assert da.tags()["query"].endswith("a/IMG_0001.jpg") and db.tags()["query"].endswith("b/IMG_0001.jpg")


def test_output_folder_is_a_stac_catalog_of_every_map(home, tmp_path):
    import pystac

    out = tmp_path / "cat"
    assert _geoprom3e(home, "map-species", "a/IMG_0001.jpg", "--out", str(out)).returncode == 0
    assert _geoprom3e(home, "uncertainty-map", "--visible", "sat,loc", "--out", str(out)).returncode == 0
    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    items = {i.id: i for i in cat.get_items()}
    assert set(items) == {"species_IMG_0001", "uncertainty"}
    for item in items.values():
        assert (out / Path(item.assets["data"].href).name).is_file()
        # Fourier stand-ins carry no imagery window: the item is dated by its creation
        assert item.datetime is not None and item.properties["geoprom3e:datetime_source"] == "created"
        assert item.assets["data"].extra_fields["raster:bands"][0]["nodata"] == -9999


def test_bad_options_give_one_line_before_any_work(home, tmp_path):
    cwd = tmp_path
    for args, needle in ((("map-species", str(home / "work" / "a" / "IMG_0001.jpg"), "--alpha", "3"), "--alpha 3"),
                         (("map-species", str(home / "work" / "a" / "IMG_0001.jpg"), "--device", "cuda:7"),
                          "--device cuda:7"),
                         (("uncertainty-map", "--n-samples", "-1"), "--n-samples -1"),
                         (("map-species", "nope.jpg"), "nope.jpg")):
        res = _geoprom3e(home, *args, cwd=cwd)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], res.stderr
        assert not (cwd / "maps").exists(), "no empty output folder is left"


def test_without_a_cache_the_line_names_the_command_that_builds_it(home, tmp_path):
    res = _geoprom3e(home, "map-species", str(home / "work" / "a" / "IMG_0001.jpg"), "--cache", str(tmp_path / "x"),
                     cwd=tmp_path)
    assert res.returncode == 2
    assert "geoprom3e embed-grid --grid usa-250x500 --cache" in res.stderr and "--build-cache" in res.stderr
    assert not (tmp_path / "maps").exists()
