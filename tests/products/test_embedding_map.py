"""embedding-map on a small real cache: the Zarr and RGB COGs read back with their georeferencing, the hidden tokens
match the model, they are cached and follow their inputs, and bad options get one line before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.engine import EmbeddingCache, FuseSettings
from geoprom3e.engine.hidden import Token, parse_tokens, update_hidden
from geoprom3e.errors import ConfigError
from geoprom3e.modalities import MODALITIES
from geoprom3e.model import ProM3E
from geoprom3e.products import EmbeddingMapSettings, embedding_maps
from tests.products.conftest import GRID, build_cache

FUSE = FuseSettings(visible=("sat", "loc"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("emb") / "cache")


@pytest.fixture(scope="module")
def written(cache, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("embout") / "out"
    res = embedding_maps(cache, out_dir=out, checkpoint=model_dir, fuse=FUSE, device="cpu",
                         settings=EmbeddingMapSettings(tokens="mu,logvar,registers,token:sat,recon:image,emb:loc",
                                                       sample=60, seed=3))
    return res, out


def test_zarr_opens_with_the_grid_crs_and_holds_the_cache_values(written, cache):
    import rioxarray  # noqa: F401

    res, out = written
    ds = xr.open_zarr(out / "representations.zarr", decode_coords="all")
    assert ds.rio.crs.to_epsg() == 4326
    assert np.allclose(tuple(ds.rio.transform())[:6], tuple(GRID.transform)[:6])
    assert ds["mu"].dims == ("lat", "lon", "mu_feature") and ds["mu"].dtype == np.float16
    assert set(ds.data_vars) >= {"mu", "logvar", "register1", "register4", "token_sat", "recon_image", "emb_loc",
                                 "mu_components"}
    store = EmbeddingCache(cache)
    loc, present = store.read_all("loc")
    valid = GRID.mask() & present
    got = ds["emb_loc"].values.astype(np.float32)
    assert np.array_equal(got[valid], loc[valid].astype(np.float16).astype(np.float32))
    assert np.isnan(got[~GRID.mask()]).all()
    group = res.details["fused_group"]
    mu = store.root[f"fused/{group}/mu"][:].astype(np.float32)
    assert np.array_equal(ds["mu"].values.astype(np.float32)[valid], mu[valid])


def test_hidden_tokens_are_the_models_own(written, cache, model_dir):
    _, out = written
    ds = xr.open_zarr(out / "representations.zarr")
    store = EmbeddingCache(cache)
    (sat, ps), (loc, pl) = store.read_all("sat"), store.read_all("loc")
    model = ProM3E.from_checkpoint(model_dir).eval()
    ok = GRID.mask() & ps & pl
    no_sat = GRID.mask() & ~ps & pl
    assert ok.any() and no_sat.any()
    for r, c in (np.argwhere(ok)[0], np.argwhere(no_sat)[0]):
        emb = np.zeros((1, 6, 512), np.float32)
        emb[0, MODALITIES.index("sat")] = np.nan_to_num(sat[r, c])
        emb[0, MODALITIES.index("loc")] = loc[r, c]
        vis = ["sat", "loc"] if ps[r, c] else ["loc"]
        h = model.infer(torch.from_numpy(emb), vis, n_samples=0, decode=[], return_hidden=True).hidden[0].numpy()
        assert np.allclose(ds["logvar"].values[r, c].astype(np.float32), h[1], atol=2e-2)
        assert np.allclose(ds["register3"].values[r, c].astype(np.float32), h[2 + 2], atol=2e-2)
        if ps[r, c]:
            assert np.allclose(ds["token_sat"].values[r, c].astype(np.float32), h[2 + 4], atol=2e-2)
        else:
            assert np.isnan(ds["token_sat"].values[r, c].astype(np.float32)).all()


def test_rgb_cogs_state_their_stretch_and_match_the_components(written):
    res, out = written
    ds = xr.open_zarr(out / "representations.zarr")
    assert {t.name for t in res.tokens} >= {"mu", "register2", "emb_loc"}
    for t in res.tokens:
        assert t.geotiff.is_file() and t.png.is_file()
        with rasterio.open(t.geotiff) as src:
            assert src.count == 3 and src.dtypes == ("uint8",) * 3 and src.crs.to_epsg() == 4326
            assert src.transform.almost_equals(GRID.transform)
            assert src.tags()["stretch_percentiles"] == "2,98" and src.tags()["token"] == t.token
            rgb = src.read()
            comps = ds[f"{t.name}_components"].values
            for b in range(3):
                lo, hi = float(src.tags(b + 1)["stretch_low"]), float(src.tags(b + 1)["stretch_high"])
                assert np.allclose([lo, hi], t.limits[b], rtol=1e-5)
                valid = np.isfinite(comps[..., b])
                expect = np.clip((comps[..., b] - t.limits[b][0]) / (t.limits[b][1] - t.limits[b][0]), 0, 1) * 254 + 1
                assert np.abs(rgb[b][valid].astype(float) - expect[valid]).max() <= 1.0
                assert (rgb[b][~valid] == 0).all() and (rgb[b][valid] > 0).all()


def test_same_seed_same_map_and_pca_differs(cache, model_dir, tmp_path):
    kw = dict(checkpoint=model_dir, fuse=FUSE, device="cpu", png=False)
    a = embedding_maps(cache, out_dir=tmp_path / "a", settings=EmbeddingMapSettings(tokens="mu", sample=50), **kw)
    b = embedding_maps(cache, out_dir=tmp_path / "b", settings=EmbeddingMapSettings(tokens="mu", sample=50), **kw)
    p = embedding_maps(cache, out_dir=tmp_path / "p", settings=EmbeddingMapSettings(tokens="mu", sample=50,
                                                                                      method="pca"), **kw)
    read = [rasterio.open(r.tokens[0].geotiff).read() for r in (a, b, p)]
    assert np.array_equal(read[0], read[1]) and not np.array_equal(read[0], read[2])


def test_a_window_is_the_same_cells_of_the_whole_map(cache, model_dir, tmp_path):
    sub = GRID.subset((-105.0, 38.7, -104.2, 39.3))
    res = embedding_maps(cache, grid=sub, out_dir=tmp_path / "w", checkpoint=model_dir, fuse=FUSE, device="cpu",
                         png=False, settings=EmbeddingMapSettings(tokens="register1", sample=20))
    full = embedding_maps(cache, out_dir=tmp_path / "f", checkpoint=model_dir, fuse=FUSE, device="cpu", png=False,
                          settings=EmbeddingMapSettings(tokens="register1", sample=20))
    r0, c0 = sub.window_in(GRID)
    w = xr.open_zarr(res.zarr)["register1"].values
    f = xr.open_zarr(full.zarr)["register1"].values[r0:r0 + sub.rows, c0:c0 + sub.cols]
    assert w.shape[:2] == sub.shape and np.array_equal(w, f, equal_nan=True)
    with rasterio.open(res.tokens[0].geotiff) as src:
        assert src.transform.almost_equals(sub.transform)


def test_hidden_tokens_are_cached_and_follow_their_inputs(tmp_path, model_dir):
    from geoprom3e.engine import fuse_grid

    path = build_cache(tmp_path / "c")
    store = EmbeddingCache(path)
    model = ProM3E.from_checkpoint(model_dir).eval()
    toks = [Token("logvar"), Token("register", 1)]
    group = fuse_grid(store, model, FUSE)
    assert set(update_hidden(store, model, FUSE, group, toks)) == {"hidden_logvar", "hidden_register1"}
    assert update_hidden(store, model, FUSE, group, toks) == []  # cached: nothing recomputed
    ch = store.chunks()[0]
    e, p = store.read_modality("loc", ch)
    store.write_modality("loc", ch, np.where(p[..., None], -e, e), p)  # the chunk's input changed
    before = {c.id: store.fused_marker(group, "hidden_logvar", c) for c in store.chunks()}
    group = fuse_grid(store, model, FUSE)
    assert update_hidden(store, model, FUSE, group, toks) == ["hidden_logvar", "hidden_register1"]
    after = {c.id: store.fused_marker(group, "hidden_logvar", c) for c in store.chunks()}
    changed = [k for k in after if after[k] != before[k]]
    assert changed == [ch.id]
    assert store.verify() == []  # the new products pass the cache's own integrity check


def test_token_syntax():
    assert [t.label for t in parse_tokens("mu, register2,token:satellite,recon:image,emb:loc")] == \
        ["mu", "register2", "token:sat", "recon:image", "emb:loc"]
    for bad in ("", "sigma", "recon:fish", "mu,mu", "register0"):
        with pytest.raises(ConfigError):
            parse_tokens(bad)


@pytest.mark.parametrize("args, needle", [
    (("--tokens", "mu,register9"), "register9"),
    (("--tokens", "mu", "--components", "33"), "--components 33"),
    (("--tokens", "recon:image", "--components", "600"), "--components 600"),
    (("--tokens", "token:env"), "token:env"),
    (("--tokens", "emb:env"), "emb:env"),
    (("--tokens", "sigma"), "sigma"),
])
def test_bad_options_one_line_exit_2_nothing_written(cache, model_dir, tmp_path, args, needle):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["embedding-map", "--cache", str(cache), "--checkpoint", str(model_dir),
                                    "--visible", "sat,loc", "--device", "cpu", "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert not out.exists()


def test_more_samples_than_cells_clamps_with_a_note(cache, model_dir, tmp_path):
    res = CliRunner().invoke(main, ["embedding-map", "--cache", str(cache), "--checkpoint", str(model_dir),
                                    "--visible", "sat,loc", "--device", "cpu", "--out", str(tmp_path / "o"),
                                    "--tokens", "mu", "--sample", "1000000", "--no-png"])
    assert res.exit_code == 0, res.output
    n = int(GRID.mask().sum())
    assert f"note: --sample 1000000 is more than the {n} cells" in res.output
    with rasterio.open(tmp_path / "o" / "embedding_mu.tif") as src:
        assert src.tags()["sample_cells"] == str(n)


def test_projected_grid_zarr_has_y_x_and_the_albers_crs(tmp_path, model_dir):
    import rioxarray  # noqa: F401

    from geoprom3e.grid import get_grid

    grid = get_grid("usa-5km-albers").subset((-800000, 1500000, -740000, 1540000))
    path = build_cache(tmp_path / "albers", grid=grid)
    res = embedding_maps(path, out_dir=tmp_path / "o", checkpoint=model_dir, fuse=FUSE, device="cpu", png=False,
                         settings=EmbeddingMapSettings(tokens="mu,emb:loc", sample=50))
    ds = res.open()
    assert ds["mu"].dims == ("y", "x", "mu_feature") and ds.rio.crs.to_epsg() == 5070
    assert np.allclose(tuple(ds.rio.transform())[:6], tuple(grid.transform)[:6])
    with rasterio.open(res.tokens[1].geotiff) as src:
        assert src.crs.to_epsg() == 5070 and src.transform.almost_equals(grid.transform)


def test_encoder_embeddings_alone_need_no_model(cache, tmp_path):
    res = embedding_maps(cache, out_dir=tmp_path / "o", checkpoint=tmp_path / "no-such-model", fuse=FUSE,
                         png=False, settings=EmbeddingMapSettings(tokens="emb:sat,emb:loc", sample=40))
    ds = res.open()
    assert set(ds.data_vars) >= {"emb_sat", "emb_loc"} and res.details["fused_group"] is None
    _, present = EmbeddingCache(cache).read_all("sat")
    assert np.isnan(ds["emb_sat"].values[GRID.mask() & ~present].astype(np.float32)).all()
