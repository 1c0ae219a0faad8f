"""probe on a small real cache: raster and GeoJSON targets sampled at cell centres (any CRS), spatial block
cross-validation, the table and JSON, and one line + exit 2 + nothing written for each bad target."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from pyproj import Transformer

from geoprom3e.cli import main
from geoprom3e.engine import FuseSettings
from geoprom3e.errors import InputError
from geoprom3e.maps.probe import chance, probe_cv, spatial_blocks
from geoprom3e.products import ProbeSettings, linear_probes
from geoprom3e.products.probe import read_target
from tests.products.conftest import GRID, build_cache

FUSE = FuseSettings(visible=("sat", "loc"))
LAT, LON = (np.broadcast_to(a, GRID.shape) for a in GRID.cell_centers())
EDGE = -104.5


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("probe") / "cache")


def write_raster(path, values, *, crs="EPSG:4326", transform=None, nodata=None):
    values = np.asarray(values)
    prof = dict(driver="GTiff", height=values.shape[0], width=values.shape[1], count=1, dtype=values.dtype.name,
                crs=crs, transform=transform or GRID.transform, nodata=nodata)
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(values, 1)
    return path


def write_geojson(path, field="habitat", crs=None, west="forest", east="grassland", declare=None):
    def ring(w, s, e, n):
        pts = [(w, s), (e, s), (e, n), (w, n), (w, s)]
        if crs:
            tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
            pts = [tr.transform(x, y) for x, y in pts]
        return {"type": "Polygon", "coordinates": [[list(p) for p in pts]]}

    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {field: west}, "geometry": ring(-106, 38, EDGE, 40)},
        {"type": "Feature", "properties": {field: east}, "geometry": ring(EDGE, 38, -103, 40)}]}
    if crs or declare:
        doc["crs"] = {"type": "name", "properties": {"name": declare or crs}}
    path.write_text(json.dumps(doc))
    return path


def test_geojson_target_in_any_crs_gives_the_polygon_containing_each_centre(tmp_path):
    want = np.where(LON < EDGE, 0, 1)
    for crs in (None, "EPSG:3857"):
        t = read_target(f"{write_geojson(tmp_path / f'h{crs is None}.geojson', crs=crs)}:habitat", GRID)
        assert t.task == "classify" and t.classes == ["forest", "grassland"]
        assert np.array_equal(t.values, want)


def test_raster_target_in_another_crs_is_resampled_to_the_grid(tmp_path):
    from rasterio.transform import from_bounds

    tr = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    w, s = tr.transform(-106.0, 38.0)
    e, n = tr.transform(-103.0, 40.0)
    rows, cols = 400, 500
    y = np.linspace(n, s, rows)[:, None].repeat(cols, 1)
    elev = ((y - s) / (n - s) * 1000).astype(np.float32)  # rises northwards
    t = read_target(str(write_raster(tmp_path / "elev.tif", elev, crs="EPSG:3857",
                                     transform=from_bounds(w, s, e, n, cols, rows))), GRID)
    assert t.task == "regress" and np.isfinite(t.values).all()
    assert np.corrcoef(t.values.ravel(), LAT.ravel())[0, 1] > 0.99


def test_habitat_probe_far_above_chance_and_random_labels_at_chance(cache, model_dir, tmp_path):
    hab = write_raster(tmp_path / "hab.tif", (LON > EDGE).astype(np.uint8))
    res = linear_probes(str(hab), cache, out_dir=tmp_path / "p", checkpoint=model_dir, fuse=FUSE, device="cpu",
                        settings=ProbeSettings(tokens="mu,registers", block_size=2))
    rows = {r["representation"]: r for r in res.rows}
    chance_acc = rows["chance (majority class)"]["accuracy"]
    assert rows["[μ]"]["accuracy"] > 0.9 > chance_acc + 0.3
    assert {"TaxaBind emb:sat", "TaxaBind emb:loc", "coordinates (lat, lon)", "all tokens"} <= set(rows)
    assert res.json_path.is_file() and res.markdown_path.read_text() == res.table
    doc = json.loads(res.json_path.read_text())
    assert doc["task"] == "classify" and doc["blocks"] > 5 and len(doc["rows"]) == len(res.rows)
    assert "| [μ] | ProM3E |" in res.table

    noise = np.random.default_rng(0).integers(0, 2, GRID.shape).astype(np.uint8)
    res = linear_probes(str(write_raster(tmp_path / "noise.tif", noise)), cache, out_dir=tmp_path / "n",
                        checkpoint=model_dir, fuse=FUSE, device="cpu",
                        settings=ProbeSettings(tokens="mu", block_size=2))
    rows = {r["representation"]: r for r in res.rows}
    assert rows["[μ]"]["accuracy"] < 0.7  # nothing to learn: held-out blocks are near chance


def test_regress_reports_r2(cache, model_dir, tmp_path):
    tgt = write_raster(tmp_path / "t.tif", (LAT * 10.0).astype(np.float32))
    res = linear_probes(str(tgt), cache, out_dir=tmp_path / "r", checkpoint=model_dir, fuse=FUSE, device="cpu",
                        settings=ProbeSettings(tokens="mu", block_size=2))
    rows = {r["representation"]: r for r in res.rows}
    assert rows["coordinates (lat, lon)"]["r2"] > 0.99 and "R²" in res.table
    assert rows["chance (the mean)"]["r2"] == 0.0


def test_folds_never_split_a_block():
    from sklearn.model_selection import GroupKFold

    r, c = np.meshgrid(np.arange(20), np.arange(30), indexing="ij")
    g = spatial_blocks(r.ravel(), c.ravel(), 4)
    assert np.unique(g).size == 5 * 8
    for train, test in GroupKFold(5).split(g, g, g):
        assert not set(g[train]) & set(g[test])
    # a target that only a memoriser of neighbours could learn scores at chance when blocks are held out
    y = (np.random.default_rng(1).random(np.unique(g).size) > 0.5)[np.searchsorted(np.unique(g), g)].astype(int)
    x = np.random.default_rng(2).standard_normal((g.size, 5))
    s = probe_cv(x, y, g, "classify")
    assert s.metrics["accuracy"] < chance(y, "classify")["accuracy"] + 0.15


@pytest.mark.parametrize("make, needle", [
    (lambda d: write_geojson(d / "bad.geojson", declare="EPSG:999999").as_posix() + ":habitat",
     "cannot be reprojected"),
    (lambda d: str(write_raster(d / "local.tif", np.ones(GRID.shape, np.uint8),
                                crs='LOCAL_CS["arbitrary",UNIT["metre",1]]')), "cannot be reprojected"),
    (lambda d: str(write_raster(d / "europe.tif", np.ones((10, 10), np.uint8),
                                transform=rasterio.transform.from_origin(5, 50, 0.1, 0.1))), "covers no cell"),
    (lambda d: write_geojson(d / "h.geojson").as_posix() + ":biome", "no field 'biome'"),
    (lambda d: str(write_raster(d / "one.tif", np.full(GRID.shape, 3, np.uint8))), "single class"),
    (lambda d: write_geojson(d / "h2.geojson", west="x", east="x").as_posix() + ":habitat", "single class"),
    (lambda d: str(d / "missing.tif"), "no such file"),
])
def test_bad_targets_one_line_exit_2_nothing_written(cache, model_dir, tmp_path, make, needle):
    target = make(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["probe", "--target", target, "--cache", str(cache), "--checkpoint",
                                    str(model_dir), "--visible", "sat,loc", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert not out.exists()


def test_probe_cli_prints_the_table(cache, model_dir, tmp_path):
    gj = write_geojson(tmp_path / "h.geojson")
    res = CliRunner().invoke(main, ["probe", "--target", f"{gj}:habitat", "--cache", str(cache), "--checkpoint",
                                    str(model_dir), "--visible", "sat,loc", "--device", "cpu", "--tokens", "mu",
                                    "--block-size", "3", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "| representation | kind | features | accuracy (%) | macro-F1 (%) |" in res.output
    assert (tmp_path / "o" / "probe_h_habitat.json").is_file()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_target_without_crs_is_refused(tmp_path):
    p = tmp_path / "nocrs.tif"
    with rasterio.open(p, "w", driver="GTiff", height=2, width=2, count=1, dtype="uint8") as ds:
        ds.write(np.ones((2, 2), np.uint8), 1)
    with pytest.raises(InputError, match="has no CRS"):
        read_target(str(p), GRID)


def test_several_targets_make_one_table_with_their_average(cache, model_dir, tmp_path):
    hab = write_raster(tmp_path / "hab.tif", (LON > EDGE).astype(np.uint8))
    elev = write_raster(tmp_path / "elev.tif", (LAT * 10.0).astype(np.float32))
    gj = write_geojson(tmp_path / "poly.geojson")
    res = CliRunner().invoke(main, ["probe", "--target", str(hab), "--target", str(elev), "--target",
                                    f"{gj}:habitat", "--cache", str(cache), "--checkpoint", str(model_dir),
                                    "--visible", "sat,loc", "--device", "cpu", "--tokens", "mu,register1",
                                    "--block-size", "2", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / "probe_all.json").read_text())
    assert [t["task"] for t in doc["targets"]] == ["classify", "regress", "classify"]
    for name in ("hab", "elev", "poly_habitat"):
        single = json.loads((tmp_path / "o" / f"probe_{name}.json").read_text())
        assert single["rows"][0]["representation"] == "[μ]"
    mu = next(r for r in doc["rows"] if r["representation"] == "[μ]")
    singles = [json.loads((tmp_path / "o" / f"probe_{n}.json").read_text())["rows"][0] for n in ("hab", "elev")]
    assert mu["scores"]["hab (acc %)"] == pytest.approx(100 * singles[0]["accuracy"])
    assert mu["scores"]["elev (R² × 100)"] == pytest.approx(100 * singles[1]["r2"])
    assert mu["average"] == pytest.approx(np.mean(list(mu["scores"].values())))
    assert "| representation | kind | hab (acc %) | elev (R² × 100) | poly_habitat (acc %) | average |" in res.output
