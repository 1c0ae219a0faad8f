"""Benchmark: diversity maps from 1M / 10M synthetic records and the real shared sets.

Each measurement runs in a fresh subprocess so its peak memory (VmHWM of the whole process) is honest;
imports happen before the clock starts.
Baseline, measured in the same run: pandas read + groupby on (cell, species name) + scipy smoothing.
Run: .venv/bin/python -m pytest tests/bench/test_bench_diversity.py -m bench -q -s
The maps are numpy/pyarrow work on the CPU; GEOPROM3E_BENCH_DEVICE is recorded but does not change it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[2]
GRID = "usa-250x500"


def _ours(path: str, species: str | None, full: bool) -> dict:
    """geoprom3e: compute only (``full`` False) or compute + write every output (``full`` True)."""
    import tempfile
    import time

    import matplotlib.figure  # noqa: F401  (imports are not part of the timed work, as for the baseline)
    import psutil  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import rasterio  # noqa: F401
    import rasterio.features  # noqa: F401
    import rioxarray  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import shapely  # noqa: F401
    import xarray  # noqa: F401

    from geoprom3e.grid import get_grid
    from geoprom3e.io.observations import ColumnOverrides, ReadOptions
    from geoprom3e.maps.diversity import compute_diversity, write_diversity_map

    opts = ReadOptions(columns=ColumnOverrides(species=species))
    t = time.perf_counter()
    if full:
        with tempfile.TemporaryDirectory() as d:
            run = write_diversity_map([path], d, get_grid(GRID), read_options=opts)
            res = run.result
    else:
        res = compute_diversity([path], get_grid(GRID), read_options=opts)
    wall = time.perf_counter() - t
    return {"wall_s": wall, "records": res.counts["records_read"], "kept": res.counts["records_kept"],
            "cells_with_data": res.counts["cells_with_data"],
            "shannon_sum": float(np.nansum(res.layers["shannon_raw"])),
            "richness_sum": float(np.nansum(res.layers["richness_raw"]))}


def _baseline(path: str, species: str | None) -> dict:
    """Straightforward pandas + scipy: read all, group by (cell, species string), smooth."""
    import time

    import pandas as pd
    import pyarrow.parquet  # noqa: F401
    import rasterio.features  # noqa: F401
    import shapely  # noqa: F401
    from scipy.ndimage import gaussian_filter

    from geoprom3e.grid import get_grid

    t = time.perf_counter()
    grid = get_grid(GRID)
    sp = species or "scientific_name"
    cols = ["latitude", "longitude", sp]
    df = pd.read_parquet(path, columns=cols) if path.endswith(".parquet") else pd.read_csv(path, usecols=cols)
    df = df.dropna()
    df[sp] = df[sp].astype(str)
    w, s, e, n = grid.bbox
    dx, dy = grid.res
    r = np.floor((n - df.latitude.to_numpy()) / dy)
    c = np.floor((df.longitude.to_numpy() - w) / dx)
    ok = (r >= 0) & (r < grid.rows) & (c >= 0) & (c < grid.cols)
    df = df[ok].assign(cell=(r[ok] * grid.cols + c[ok]).astype(np.int64))
    mask = grid.mask()
    df = df[mask.ravel()[df.cell.to_numpy()]]
    counts = df.groupby(["cell", sp]).size()
    total = counts.groupby(level=0).sum()
    rich = counts.groupby(level=0).size()
    p = counts.to_numpy() / total.reindex(counts.index.get_level_values(0)).to_numpy()
    h = pd.Series(-p * np.log(p), index=counts.index).groupby(level=0).sum()
    sh = np.full(grid.n_cells, np.nan)
    ri = np.full(grid.n_cells, np.nan)
    sh[h.index.to_numpy()] = h.to_numpy()
    ri[rich.index.to_numpy()] = rich.to_numpy()
    for layer in (sh, ri):
        out = gaussian_filter(np.nan_to_num(layer.reshape(grid.shape)), 2.0, mode="constant", cval=0.0, truncate=4.0)
        out[~mask] = np.nan
    wall = time.perf_counter() - t
    return {"wall_s": wall, "records": int(ok.size), "kept": len(df), "cells_with_data": int(len(rich)),
            "shannon_sum": float(np.nansum(sh)), "richness_sum": float(np.nansum(ri))}


def _child(kind: str, path: str, species: str | None) -> dict:
    """Run one measurement in a fresh interpreter; add its peak RSS."""
    code = (
        "import json\n"
        "from tests.bench.test_bench_diversity import _baseline, _ours\n"
        f"kind, path, species = {kind!r}, {path!r}, {species!r}\n"
        "r = _baseline(path, species) if kind == 'baseline' else _ours(path, species, kind == 'full')\n"
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
        "r['peak_rss_mb'] = int(hwm.split()[1]) / 1024\n"
        "print('RESULT' + json.dumps(r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[6:])


@pytest.mark.bench
def test_bench_diversity(tmp_path):
    from geoprom3e.testing.observations import synthetic_records, write_records
    from tests.bench.benchutil import write_results

    table = synthetic_records(10_000_000, n_species=2000, seed=0)
    sets = {
        "synthetic_1M_csv": (write_records(table.slice(0, 1_000_000), tmp_path / "obs1m.csv"), None),
        "synthetic_10M_csv": (write_records(table, tmp_path / "obs10m.csv"), None),
        "synthetic_10M_parquet": (write_records(table, tmp_path / "obs10m.parquet"), None),
    }
    del table
    inat = SHARED / "data" / "inat_butterflies_western_us" / "inat_butterflies_AZ_UT_WA_MT_combined.csv"
    neon = SHARED / "data" / "neon_breeding_birds" / "neon_birds_point_counts.csv.gz"
    if inat.exists():
        sets["real_inat_butterflies"] = (inat, "taxon_species_name")
    if neon.exists():
        sets["real_neon_birds_gz"] = (neon, None)
    results = {}
    for name, (path, species) in sets.items():
        ours = _child("compute", str(path), species)
        full = _child("full", str(path), species)
        base = _child("baseline", str(path), species)
        assert ours["kept"] == base["kept"] and ours["cells_with_data"] == base["cells_with_data"]
        assert ours["richness_sum"] == base["richness_sum"]
        assert ours["shannon_sum"] == pytest.approx(base["shannon_sum"], rel=1e-6)
        results[name] = {
            "records": ours["records"],
            "bytes": Path(path).stat().st_size,
            "compute_wall_s": round(ours["wall_s"], 3),
            "compute_records_per_s": round(ours["records"] / ours["wall_s"]),
            "compute_peak_rss_mb": round(ours["peak_rss_mb"]),
            "all_outputs_wall_s": round(full["wall_s"], 3),
            "all_outputs_peak_rss_mb": round(full["peak_rss_mb"]),
            "baseline_wall_s": round(base["wall_s"], 3),
            "baseline_peak_rss_mb": round(base["peak_rss_mb"]),
            "speedup_vs_baseline": round(base["wall_s"] / ours["wall_s"], 2),
        }
        print(name, results[name])
    path = write_results("diversity", {
        "grid": GRID,
        "device": os.environ.get("GEOPROM3E_BENCH_DEVICE", "cpu") + " (ignored: numpy/pyarrow CPU work)",
        "baseline": "pandas read_csv/read_parquet + groupby([cell, species string]) + scipy gaussian_filter",
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "results": results,
    })
    print("wrote", path)
    big = results["synthetic_10M_csv"]
    assert big["all_outputs_wall_s"] < 60  # loose guard; the target (≤ 15 s, ≥ 3×, ≤ 2 GB) is reported
