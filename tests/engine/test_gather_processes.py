"""Gather in worker processes (``embed_grid(gather_workers=N)``, ``embed-grid --gather-workers N``).

Whatever gathers the chunks, the cache is the same: embeddings, presence, failure records, resume after a partial
run, ``--retry-failed``; a worker's error reaches the user as the same one line, a killed worker as one line naming
it, and the next run resumes. Shared-memory slots never outlive the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from geoprom3e.engine import EmbeddingCache, embed_grid
from geoprom3e.engine.gather import default_gather_workers
from geoprom3e.errors import ConfigError, InputError, SchedulerError
from geoprom3e.grid import GridSpec
from geoprom3e.testing.engine import FourierLocInput
from tests.engine.interrupt import ctrl_c_after_first_commit

GRID = GridSpec("test-16x32", "EPSG:4326", (-108.0, 37.0, -98.4, 40.2), (16, 32), mask_source="conus")


def _state(path: Path, modality: str = "loc") -> tuple[np.ndarray, np.ndarray, list]:
    cache = EmbeddingCache(path)
    emb = np.asarray(cache.root[f"{modality}_embedding"][:])
    present = np.asarray(cache.root[f"{modality}_present"][:])
    return emb, present, sorted((f["row"], f["col"], f["reason"]) for f in cache.failures(modality))


def _assert_same(a: Path, b: Path, modality: str = "loc") -> None:
    ea, pa, fa = _state(a, modality)
    eb, pb, fb = _state(b, modality)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(ea, eb)  # NaN where absent, on both sides
    assert fa == fb


def _gather_processes_in_group(pgid: int) -> list[str]:
    """Command lines of spawned worker processes in process group ``pgid`` (multiprocessing's resource tracker,
    which leaves on its own once the run's pipe closes, is not one)."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(d.name)) == pgid:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if "spawn_main" in cmd:
                    out.append(cmd)
        except (OSError, ProcessLookupError):
            continue
    return out


def _shm_segments() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("psm_*")} if Path("/dev/shm").is_dir() else set()


def test_processes_build_the_same_cache_as_one_process(tmp_path):
    inputs = [FourierLocInput(fail_every=7), FourierLocInput("sat", seed=5)]
    one = embed_grid(GRID, tmp_path / "one", inputs, chunk_size=4, gather_workers=0)
    before = _shm_segments()
    two = embed_grid(GRID, tmp_path / "two", inputs, chunk_size=4, gather_workers=2)
    assert (one.gather_workers, two.gather_workers) == (0, 2)
    assert two.cells == one.cells and two.chunks_done == one.chunks_done and two.failures == one.failures
    assert two.failures["loc"] > 0 and two.stage_seconds["gather"] > 0
    for m in ("loc", "sat"):
        _assert_same(tmp_path / "one", tmp_path / "two", m)
    assert EmbeddingCache(tmp_path / "two").verify() == []
    assert _shm_segments() <= before  # every slot was unlinked


def test_a_partial_run_resumes_with_processes(tmp_path):
    inputs = [FourierLocInput(fail_every=5)]
    embed_grid(GRID, tmp_path / "full", inputs, chunk_size=4, gather_workers=0)
    first = embed_grid(GRID, tmp_path / "part", inputs, chunk_size=4, gather_workers=2, max_chunks=5)
    assert first.chunks_done == 5
    second = embed_grid(GRID, tmp_path / "part", inputs, chunk_size=4, gather_workers=2)
    assert second.chunks_skipped == 5 and second.chunks_done == first.chunks_total - 5
    _assert_same(tmp_path / "full", tmp_path / "part")


def test_retry_failed_with_processes_heals_to_the_clean_cache(tmp_path):
    embed_grid(GRID, tmp_path / "clean", [FourierLocInput()], chunk_size=4, gather_workers=0)
    embed_grid(GRID, tmp_path / "c", [FourierLocInput(fail_every=3)], chunk_size=4, gather_workers=2)
    assert _state(tmp_path / "c")[2]
    rep = embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=4, gather_workers=2, retry_failed=True)
    assert rep.chunks_done > 0 and rep.failures == {"loc": 0}
    _assert_same(tmp_path / "clean", tmp_path / "c")


def test_an_error_in_a_gather_process_is_the_same_error_and_commits_nothing(tmp_path):
    msg = "covariate raster /nope.tif does not exist: pass --covariates with a real file"
    with pytest.raises(InputError, match="covariate raster /nope.tif does not exist"):
        embed_grid(GRID, tmp_path / "c", [FourierLocInput(raise_in_gather=msg)], chunk_size=4, gather_workers=2)
    assert EmbeddingCache(tmp_path / "c").commit_info("loc") == []


def test_a_killed_gather_process_gives_one_line_and_the_next_run_resumes(tmp_path):
    embed_grid(GRID, tmp_path / "full", [FourierLocInput()], chunk_size=4, gather_workers=0)
    embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=4, gather_workers=2, max_chunks=4)
    with pytest.raises(SchedulerError, match=r"gather process geoprom3e-gather-\d \(pid \d+\) was killed by signal 9 "
                                             r"\(out of memory\?\): committed chunks are kept; rerun"):
        embed_grid(GRID, tmp_path / "c", [FourierLocInput(kill_below_lat=38.0)], chunk_size=4, gather_workers=2)
    cache = EmbeddingCache(tmp_path / "c")
    assert len(cache.commit_info("loc")) >= 4 and cache.verify() == []
    embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=4, gather_workers=2)
    _assert_same(tmp_path / "full", tmp_path / "c")


def test_gather_workers_are_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="--gather-workers -1: must be >= 0"):
        embed_grid(GRID, tmp_path / "c", [FourierLocInput()], gather_workers=-1)
    with pytest.raises(ConfigError, match="with --scheduler/--workers each Dask worker gathers its own chunks"):
        embed_grid(GRID, tmp_path / "c", [FourierLocInput()], gather_workers=2, workers=2)
    assert not (tmp_path / "c").exists()


def test_default_is_one_process_per_core_for_network_inputs():
    from geoprom3e.engine.sources import LocInput, SatInput

    assert default_gather_workers([SatInput(), LocInput()]) == (os.cpu_count() or 1)
    assert default_gather_workers([LocInput(), FourierLocInput()]) == 0


def test_ctrl_c_stops_the_gather_processes_too(tmp_path):
    args = ["embed-grid", "--grid", "usa-250x500", "--bbox", "-110", "35", "-100", "42", "--modalities", "loc",
            "--cache", str(tmp_path / "c"), "--chunk-size", "2", "--gather-workers", "2"]
    pid, code, err = ctrl_c_after_first_commit(args, tmp_path / "c", "loc", tmp_path / "hold")
    assert code == 130, err
    assert "Resume with:" in err and "Traceback" not in err
    assert _gather_processes_in_group(pid) == []  # none outlives the run (join, not a timer)
    (tmp_path / "hold").unlink()
    c = EmbeddingCache(tmp_path / "c")
    assert c.verify() == [] and len(c.commit_info("loc")) >= 1


def test_cli_refuses_gather_workers_with_dask_in_one_line(tmp_path):
    from click.testing import CliRunner

    from geoprom3e.cli import main

    res = CliRunner().invoke(main, ["embed-grid", "--grid", "usa-250x500", "--bbox", "-105", "38", "-104", "39",
                                    "--modalities", "loc", "--cache", str(tmp_path / "c"), "--gather-workers", "2",
                                    "--workers", "2"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--gather-workers" in lines[0] and "drop one of them" in lines[0]
    assert not (tmp_path / "c").exists()
