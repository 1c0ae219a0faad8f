"""Bad input and faults of the engine commands: one line, exit 2 (130 for Ctrl-C), nothing corrupted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.engine import EmbeddingCache, embed_grid
from geoprom3e.grid import get_grid
from geoprom3e.model import ProM3E, ProM3EConfig
from geoprom3e.testing.encoders import save_small_hf_clip
from geoprom3e.testing.engine import FourierLocInput
from tests.engine.interrupt import ctrl_c_after_first_commit

BBOX = ["-105.4", "38.6", "-103.6", "39.4"]
GRID_ARGS = ["--grid", "usa-250x500", "--bbox", *BBOX]


@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    """A cache with loc embeddings for the window, a small model and a small image encoder."""
    d = tmp_path_factory.mktemp("cli-errors")
    grid = get_grid("usa-250x500").subset(tuple(float(v) for v in BBOX))
    embed_grid(grid, d / "cache", [FourierLocInput()], chunk_size=4)
    torch.manual_seed(0)
    ProM3E(ProM3EConfig(embed_dim=32, mlp_dim=64, heads=4)).save_checkpoint(d / "model")
    save_small_hf_clip(d / "img")
    return d


def _run(args):
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


def _one_error_line(out: str) -> str:
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, out
    return lines[0]


def test_unreadable_query_image(ready, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, out = _run(["map-species", str(bad), *GRID_ARGS, "--cache", str(ready / "cache"), "--checkpoint",
                      str(ready / "model"), "--image-weights", str(ready / "img"), "--visible", "loc",
                      "--out", str(tmp_path / "maps")])
    assert code == 2
    assert "broken.jpg" in _one_error_line(out)
    assert not any((tmp_path / "maps").glob("*.tif"))


def test_inputs_are_checked_before_any_work(ready, tmp_path):
    code, out = _run(["map-species", str(tmp_path / "missing.jpg"), *GRID_ARGS, "--cache", str(tmp_path / "none"),
                      "--out", str(tmp_path / "maps")])
    assert code == 2 and "query image" in _one_error_line(out) and "missing.jpg" in out
    code, out = _run(["embed-grid", *GRID_ARGS, "--modalities", "sat,audio", "--dry-run"])
    assert code == 2 and "not audio" in _one_error_line(out)
    code, out = _run(["embed-grid", *GRID_ARGS, "--modalities", "loc", "--dry-run", "--cache", str(tmp_path / "c")])
    assert code == 0 and "embedding 120 cells" in out and not (tmp_path / "c").exists()


def test_missing_cache_names_the_command_that_builds_it(ready, tmp_path):
    code, out = _run(["uncertainty-map", *GRID_ARGS, "--cache", str(tmp_path / "nothing"), "--checkpoint",
                      str(ready / "model"), "--out", str(tmp_path / "maps")])
    assert code == 2
    line = _one_error_line(out)
    assert "no embedding cache" in line and "geoprom3e embed-grid --grid" in line
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())


def test_cache_built_with_other_settings_says_which(ready, tmp_path):
    grid = get_grid("usa-250x500").subset(tuple(float(v) for v in BBOX))
    with pytest.raises(Exception, match=r"seed: cache has 0, asked 7"):
        embed_grid(grid, ready / "cache", [FourierLocInput(seed=7)], chunk_size=4)
    code, out = _run(["embed-grid", *GRID_ARGS, "--modalities", "loc", "--cache", str(ready / "cache"),
                      "--chunk-size", "4"])
    assert code == 2 and "'loc' embeddings built with other settings" in _one_error_line(out)
    # nothing was corrupted: the cache still holds the original embeddings
    c = EmbeddingCache(ready / "cache")
    assert np.asarray(c.root["loc_present"][:])[grid.mask()].all()


def test_unreachable_scheduler(ready, tmp_path):
    code, out = _run(["embed-grid", *GRID_ARGS, "--modalities", "loc", "--cache", str(tmp_path / "c"),
                      "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in _one_error_line(out)


def test_existing_outputs_are_refused_and_kept(ready, tmp_path):
    args = ["uncertainty-map", *GRID_ARGS, "--cache", str(ready / "cache"), "--checkpoint", str(ready / "model"),
            "--visible", "loc", "--out", str(tmp_path / "maps")]
    code, out = _run(args)
    assert code == 0, out
    before = (tmp_path / "maps" / "uncertainty.tif").read_bytes()
    code, out = _run(args)
    assert code == 2 and "--overwrite" in _one_error_line(out)
    assert (tmp_path / "maps" / "uncertainty.tif").read_bytes() == before


def test_compare_needs_the_same_grid(ready, tmp_path):
    code, out = _run(["uncertainty-map", *GRID_ARGS, "--cache", str(ready / "cache"), "--checkpoint",
                      str(ready / "model"), "--visible", "loc", "--out", str(tmp_path / "a")])
    assert code == 0, out
    code, out = _run(["compare", str(tmp_path / "a" / "uncertainty.tif"), str(tmp_path / "a" / "uncertainty.tif"),
                      "--band-a", "sigma_l1", "--band-b", "n_modalities", "--out", str(tmp_path / "cmp")])
    assert code == 0 and (tmp_path / "cmp" / "compare.json").is_file() and (tmp_path / "cmp" / "compare.png").is_file()
    code, out = _run(["compare", str(tmp_path / "a" / "uncertainty.tif"), str(tmp_path / "a" / "uncertainty.tif"),
                      "--band-a", "nope"])
    assert code == 2 and "no band 'nope': choose one of sigma_l1, n_modalities" in _one_error_line(out)


def test_ctrl_c_stops_cleanly_and_prints_the_resume_command(tmp_path):
    args = ["embed-grid", "--grid", "usa-250x500", "--bbox", "-110", "35", "-100", "42", "--modalities", "loc",
            "--cache", str(tmp_path / "c"), "--chunk-size", "2"]
    _, code, err = ctrl_c_after_first_commit(args, tmp_path / "c", "loc", tmp_path / "hold")
    assert code == 130, err
    assert "Resume with:" in err and "embed-grid" in err
    markers = tmp_path / "c" / "commits" / "loc"
    done = len(list(markers.glob("*.json")))
    assert done >= 1
    grid = get_grid("usa-250x500").subset((-110, 35, -100, 42))
    c = EmbeddingCache(tmp_path / "c")
    assert c.grid.shape == grid.shape and grid.window_in(c.grid) == (0, 0)
    present = np.asarray(c.root["loc_present"][:])
    assert present.sum() > 0
    for info in c.commit_info("loc"):  # every committed chunk is whole
        r, col = (int(v[1:]) for v in info["chunk"].split("_"))
        block = present[r * 2 : r * 2 + 2, col * 2 : col * 2 + 2]
        assert block.sum() == info["present"]
