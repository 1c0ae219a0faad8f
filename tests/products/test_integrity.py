"""No silent wrong map: results follow their inputs; corruption, concurrency and collisions give a correct
result or one line (exit 2); draws do not depend on how the grid was chunked."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.engine import EmbeddingCache, FuseSettings, embed_grid, fuse_grid
from geoprom3e.model import ProM3E
from geoprom3e.products import similarity_from_cache, uncertainty_map
from geoprom3e.testing.engine import FourierLocInput
from tests.products.conftest import GRID, build_cache

FUSE = FuseSettings(("sat", "loc"))


def _sigma(cache, model_dir, out, **kw):
    res = uncertainty_map(cache, out_dir=out, checkpoint=model_dir, fuse=kw.pop("fuse", FUSE), overwrite=True,
                          png=False, **kw)
    return {k: res.maps[0].dataset[k].values for k in ("sigma_l1", "n_modalities")}


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def test_maps_follow_a_modality_added_later(model_dir, tmp_path):
    cache = build_cache(tmp_path / "c", modalities=("sat",))
    before = _sigma(cache, model_dir, tmp_path / "m1")
    assert np.nanmax(before["n_modalities"]) == 1
    build_cache(tmp_path / "c", modalities=("loc",))
    after = _sigma(cache, model_dir, tmp_path / "m2")
    fresh = _sigma(build_cache(tmp_path / "fresh"), model_dir, tmp_path / "m3")
    mask = GRID.mask()
    assert (after["n_modalities"][mask] >= 1).all() and np.nanmax(after["n_modalities"]) == 2
    for k in after:
        np.testing.assert_array_equal(after[k], fresh[k], err_msg=k)


def test_maps_follow_a_healed_chunk(model_dir, tmp_path):
    cache = build_cache(tmp_path / "c")  # every 7th sat cell failed
    hurt = _sigma(cache, model_dir, tmp_path / "m1")
    rep = embed_grid(GRID, cache, [FourierLocInput("sat", seed=5)], retry_failed=True)  # the outage is over
    assert rep.chunks_done > 0
    healed = _sigma(cache, model_dir, tmp_path / "m2")
    clean = tmp_path / "clean"
    embed_grid(GRID, clean, [FourierLocInput(), FourierLocInput("sat", seed=5)], chunk_size=4)
    expect = _sigma(clean, model_dir, tmp_path / "m3")
    assert not np.array_equal(hurt["n_modalities"], expect["n_modalities"], equal_nan=True)
    for k in healed:
        np.testing.assert_array_equal(healed[k], expect[k], err_msg=k)


@pytest.mark.parametrize("chunk_size", [16, 32])
def test_maps_do_not_depend_on_the_chunk_size(model_dir, tmp_path, chunk_size):
    model = ProM3E.from_checkpoint(model_dir)
    q = np.random.default_rng(1).normal(size=(1, 512))
    maps = []
    for cs in (4, chunk_size):
        embed_grid(GRID, tmp_path / f"c{cs}", [FourierLocInput(), FourierLocInput("sat", seed=5)], chunk_size=cs)
        c = EmbeddingCache(tmp_path / f"c{cs}")
        group = fuse_grid(c, model, FuseSettings(("sat", "loc"), n_samples=5), decode=["image"])
        maps.append(similarity_from_cache(c, group, q)[0])
    assert np.isfinite(maps[0][GRID.mask()]).all()
    np.testing.assert_allclose(maps[0], maps[1], atol=2e-6)


def _chunk_file(cache, var, i=0, j=0):
    path = cache / "embeddings.zarr" / var / "c" / str(i) / str(j)
    return path if path.is_file() else path / "0"


@pytest.mark.parametrize("damage", ["delete-present", "delete-embedding", "truncate-embedding"])
def test_a_damaged_chunk_gives_one_line_then_verify_repairs_it(model_dir, tmp_path, damage):
    import rasterio

    cache = build_cache(tmp_path / "c")
    args = ["uncertainty-map", "--cache", cache, "--checkpoint", model_dir, "--visible", "sat,loc", "--no-png"]
    assert _run(*args, "--out", tmp_path / "good")[0] == 0
    target = _chunk_file(cache, "sat_present" if damage == "delete-present" else "sat_embedding")
    if damage.startswith("truncate"):
        target.write_bytes(target.read_bytes()[:1000])
    else:
        target.unlink()
    # maps already fused from the intact inputs stay right (their own checksums hold) ...
    assert _run(*args, "--out", tmp_path / "same")[0] == 0
    with rasterio.open(tmp_path / "good" / "uncertainty.tif") as a, \
            rasterio.open(tmp_path / "same" / "uncertainty.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    # ... and anything that reads the damaged chunk stops with one line naming it and the repair
    code, out = _run(*args, "--seed", 1, "--out", tmp_path / "bad")
    assert code == 2 and len(out.strip().splitlines()) == 2, out  # "loading ProM3E ...", then the error
    line = out.strip().splitlines()[-1]
    assert "chunk r0_c0 of sat" in line and "is corrupt" in line and "geoprom3e cache verify --repair" in line
    assert not (tmp_path / "bad").exists()
    code, out = _run("cache", "verify", "--cache", cache)
    assert code == 1 and "1 bad chunk(s) in sat" in out
    code, out = _run("cache", "verify", "--repair", "--cache", cache)
    assert code == 0 and "marked for recompute" in out
    build_cache(cache)  # the next run redoes the unmarked chunk
    assert _run("cache", "verify", "--cache", cache)[0] == 0
    assert _run(*args, "--seed", 1, "--out", tmp_path / "again")[0] == 0


def test_a_damaged_fused_chunk_is_never_read_as_a_value(model_dir, tmp_path):
    from geoprom3e.errors import CacheError

    cache = build_cache(tmp_path / "c")
    c = EmbeddingCache(cache)
    group = fuse_grid(c, ProM3E.from_checkpoint(model_dir), FUSE, decode=["image"])
    (cache / "embeddings.zarr" / "fused" / group / "recon_image" / "c" / "0" / "0" / "0").unlink()
    with pytest.raises(CacheError, match=r"chunk r0_c0 of fused/.*/recon_image is corrupt .* cache verify --repair"):
        similarity_from_cache(c, group, np.ones((1, 512)))
    assert len(c.verify(repair=True)) == 1
    fuse_grid(c, ProM3E.from_checkpoint(model_dir), FUSE, decode=["image"])  # recomputes the unmarked chunk
    assert np.isfinite(similarity_from_cache(c, group, np.ones((1, 512)))[0][GRID.mask()]).all()


_WRITER = textwrap.dedent("""
    import sys
    from geoprom3e.engine import embed_grid
    from geoprom3e.grid import get_grid
    from geoprom3e.testing.engine import FourierLocInput
    grid = get_grid("usa-250x500").subset((-105.4, 38.6, -103.6, 39.4))
    embed_grid(grid, sys.argv[1], [FourierLocInput(sys.argv[2], seed=int(sys.argv[3]))], chunk_size=4)
""")


def test_two_writers_of_different_modalities_lose_nothing(tmp_path):
    for trial in range(3):
        cache = tmp_path / f"c{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(cache), m, str(s)], stderr=subprocess.PIPE,
                                  text=True) for m, s in (("sat", 5), ("loc", 0))]
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read()
        c = EmbeddingCache(cache)
        assert sorted(c.modalities()) == ["loc", "sat"]
        for m in ("sat", "loc"):
            _, present = c.read_all(m)
            assert present[GRID.mask()].all(), m
        assert c.verify() == []


def test_a_second_writer_of_the_same_modality_gets_one_line(tmp_path):
    cache = build_cache(tmp_path / "c", modalities=("loc",))
    c = EmbeddingCache(cache)
    from geoprom3e.errors import CacheError

    with c.writer_lock("loc"), pytest.raises(CacheError, match=f"loc is being written by pid {os.getpid()} on "):
        embed_grid(GRID, cache, [FourierLocInput()], retry_failed=True)
    assert embed_grid(GRID, cache, [FourierLocInput()]).chunks_skipped > 0  # released: runs again


_MAP_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from geoprom3e.errors import OutputError
    from geoprom3e.grid import get_grid
    from geoprom3e.io.maps import write_maps
    out, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    grid = get_grid("usa-250x500").subset((-105.4, 38.6, -103.6, 39.4))
    layer = {"v": np.where(grid.mask(), float(me == "a"), np.nan)}
    (out / f"ready-{me}").touch()
    while not (out / f"ready-{other}").exists():  # start together: wait on the other run's marker
        time.sleep(0.01)
    try:
        write_maps(out / "maps", grid, layer, basename="m", png=False)
    except OutputError as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
""")


def test_two_runs_on_one_output_folder_never_both_win(tmp_path):
    for trial in range(3):
        d = tmp_path / str(trial)
        d.mkdir()
        procs = [subprocess.Popen([sys.executable, "-c", _MAP_WRITER, str(d), me, other], stderr=subprocess.PIPE,
                                  text=True) for me, other in (("a", "b"), ("b", "a"))]
        codes = sorted(p.wait(timeout=300) for p in procs)
        errs = [p.stderr.read() for p in procs]
        assert codes == [0, 3], errs
        assert any("--overwrite" in e for e in errs)
        import rasterio

        with rasterio.open(d / "maps" / "m.tif") as ds:  # the output set is one run's, whole
            v = ds.read(1, masked=True).compressed()
        with open(d / "maps" / "m.stac.json") as f:
            assert f.read()
        assert len(set(v.tolist())) == 1
        assert not any(p.name.startswith(".m.staging") for p in (d / "maps").iterdir())


def test_overwrite_removes_every_file_of_the_old_output_set(tmp_path):
    from geoprom3e.io.maps import write_maps

    layer = {"v": np.where(GRID.mask(), 1.0, np.nan)}
    first = write_maps(tmp_path, GRID, layer, basename="m", png=True, settings={})
    assert first.pngs["v"].is_file()
    write_maps(tmp_path, GRID, layer, basename="m", png=False, overwrite=True, settings={})
    assert not first.pngs["v"].exists()
    assert first.geotiff.is_file() and first.stac.is_file()


def _limited(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_gives_one_line_and_the_next_run_resumes(tmp_path, model_dir):
    """RLIMIT_FSIZE makes every write past the limit fail with EFBIG, as ENOSPC would on a full disk."""
    cmd = [sys.executable, "-m", "geoprom3e", "embed-grid", "--grid", "usa-250x500", "--bbox", "-105.4", "38.6",
           "-103.6", "39.4", "--modalities", "loc", "--cache", str(tmp_path / "c"), "--chunk-size", "8"]
    full = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_limited(20_000), timeout=300)
    assert full.returncode == 2, full.stderr
    err = [ln for ln in full.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in full.stderr and "free" in err[0], full.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert EmbeddingCache(tmp_path / "c").verify() == []
    _, present = EmbeddingCache(tmp_path / "c").read_all("loc")
    assert present[GRID.mask()].all()
    # the fuse step and the map writers too
    umap = [sys.executable, "-m", "geoprom3e", "uncertainty-map", "--cache", str(tmp_path / "c"), "--checkpoint",
            str(model_dir), "--visible", "loc", "--out", str(tmp_path / "maps")]
    full = subprocess.run(umap, capture_output=True, text=True, preexec_fn=_limited(3_000), timeout=300)
    err = [ln for ln in full.stderr.splitlines() if ln.startswith("error:")]
    assert full.returncode == 2 and len(err) == 1 and "Traceback" not in full.stderr, full.stderr
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").glob("*.tif"))
    again = subprocess.run(umap, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
