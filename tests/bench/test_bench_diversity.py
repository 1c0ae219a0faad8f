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
    from geoprom3e.products.diversity import compute_diversity, write_diversity_map

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


# -- scale: 100M records (GEOPROM3E_BENCH_RECORDS) against a bare pyarrow + numpy baseline -----------------------
SCALE_CHUNK = 5_000_000


def _write_scale_data(n: int, folder: Path, formats: list[str]) -> dict[str, Path]:
    """``n`` synthetic records written chunk by chunk (memory stays at one chunk) as Parquet and/or CSV.

    GBIF-like columns: decimalLatitude, decimalLongitude, species, occurrenceStatus (1 % ABSENT).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from geoprom3e.testing.observations import synthetic_records

    paths = {f: folder / f"obs_{n}.{f}" for f in formats}
    writers: dict[str, object] = {}
    done = 0
    for i in range(0, n, SCALE_CHUNK):
        m = min(SCALE_CHUNK, n - i)
        t = synthetic_records(m, n_species=2000, seed=1000 + i // SCALE_CHUNK)
        status = np.where(np.random.default_rng(i).random(m) < 0.01, "ABSENT", "PRESENT")
        t = pa.table({"decimalLatitude": t.column("latitude"), "decimalLongitude": t.column("longitude"),
                      "species": t.column("scientific_name").cast(pa.string()),
                      "occurrenceStatus": pa.array(status)})
        for fmt, path in paths.items():
            if fmt not in writers:
                writers[fmt] = (pq.ParquetWriter(path, t.schema) if fmt == "parquet"
                                else pacsv.CSVWriter(str(path), t.schema))
            writers[fmt].write_table(t)
        done += m
        print(f"data: {done:,}/{n:,} records written", file=sys.stderr, flush=True)
    for w in writers.values():
        w.close()
    return paths


def _scale_ours(path: str) -> dict:
    """geoprom3e: every map and output file (GeoTIFF, QML, NetCDF, PNGs, manifest), with progress on stderr."""
    import tempfile
    import time

    import matplotlib.figure  # noqa: F401
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
    from geoprom3e.products.diversity import write_diversity_map

    seen = [0, 0]

    def progress(k: int) -> None:
        seen[0] += k
        if seen[0] - seen[1] >= 10_000_000:
            seen[1] = seen[0]
            print(f"ours: {seen[0]:,} records read", file=sys.stderr, flush=True)

    grid = get_grid(GRID)
    grid.mask()  # cached outline rasterisation, as for the baseline
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        run = write_diversity_map([path], d, grid, checksums=False, progress=progress)
        n_files = len(run.outputs.all())
    wall = time.perf_counter() - t
    res = run.result
    return {"wall_s": wall, "records": res.counts["records_read"], "kept": res.counts["records_kept"],
            "dropped": res.counts["dropped"], "files": n_files, "cells_with_data": res.counts["cells_with_data"],
            "richness_sum": float(np.nansum(res.layers["richness_raw"], dtype=np.float64)),  # > 2**24: not float32
            "shannon_sum": float(np.nansum(res.layers["shannon_raw"], dtype=np.float64))}


def _scale_baseline(path: str) -> dict:
    """Bare pyarrow + numpy: stream the file, drop absences, cell index, per-chunk unique (cell, species), smooth."""
    import time

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from scipy.ndimage import gaussian_filter

    from geoprom3e.grid import get_grid

    grid = get_grid(GRID)
    mask = grid.mask().ravel()
    t = time.perf_counter()
    cols = ["decimalLatitude", "decimalLongitude", "species", "occurrenceStatus"]
    if path.endswith(".parquet"):  # row group by row group: flat memory (see _parquet_batches)
        pf = pq.ParquetFile(path)
        batches = (b for g in range(pf.num_row_groups)
                   for b in pf.iter_batches(batch_size=1_000_000, columns=cols, row_groups=[g]))
    else:
        batches = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=4 * 2**20),  # as ours
                                 convert_options=pacsv.ConvertOptions(
                                     include_columns=cols,
                                     column_types={"species": pa.dictionary(pa.int32(), pa.string())}))
    w, _, _, n = grid.bbox
    dx, dy = grid.res
    codes: dict[str, int] = {}
    parts = []
    records = 0
    for b in batches:
        records += b.num_rows
        present = pc.not_equal(b.column("occurrenceStatus"), "ABSENT").to_numpy(zero_copy_only=False)
        sp = b.column("species")
        if not pa.types.is_dictionary(sp.type):
            sp = pc.dictionary_encode(sp)
        lut = np.array([codes.setdefault(s, len(codes)) for s in sp.dictionary.to_pylist()], dtype=np.int64)
        code = lut[sp.indices.to_numpy(zero_copy_only=False)]
        r = np.floor((n - b.column("decimalLatitude").to_numpy()) / dy)
        c = np.floor((b.column("decimalLongitude").to_numpy() - w) / dx)
        ok = present & (r >= 0) & (r < grid.rows) & (c >= 0) & (c < grid.cols)
        cell = (r[ok] * grid.cols + c[ok]).astype(np.int64)
        inside = mask[cell]
        key = (cell[inside] << 32) | code[ok][inside]
        parts.append(np.unique(key, return_counts=True))
    key = np.concatenate([p[0] for p in parts])
    cnt = np.concatenate([p[1] for p in parts])
    order = np.argsort(key, kind="stable")
    key, cnt = key[order], cnt[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    key, cnt = key[starts], np.add.reduceat(cnt, starts)
    cells, local = np.unique(key >> 32, return_inverse=True)
    total = np.bincount(local, weights=cnt)
    ent = np.log(total) - np.bincount(local, weights=cnt * np.log(cnt)) / total
    sh = np.full(grid.n_cells, np.nan)
    ri = np.full(grid.n_cells, np.nan)
    sh[cells], ri[cells] = ent, np.bincount(local)
    for layer in (sh, ri):
        out = gaussian_filter(np.nan_to_num(layer.reshape(grid.shape)), 2.0, mode="constant", cval=0.0, truncate=4.0)
        out[~grid.mask()] = np.nan
    wall = time.perf_counter() - t
    return {"wall_s": wall, "records": records, "kept": int(cnt.sum()), "cells_with_data": len(cells),
            "richness_sum": float(np.nansum(ri)), "shannon_sum": float(np.nansum(sh))}


def _scale_child(kind: str, path: str) -> dict:
    code = (
        "import json\n"
        "from tests.bench.test_bench_diversity import _scale_baseline, _scale_ours\n"
        f"r = (_scale_baseline if {kind!r} == 'baseline' else _scale_ours)({path!r})\n"
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
        "r['peak_rss_mb'] = int(hwm.split()[1]) / 1024\n"
        "print('RESULT' + json.dumps(r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[6:])


@pytest.mark.bench
def test_bench_diversity_scale(tmp_path_factory):
    """Every diversity map from N records (default 100M; GEOPROM3E_BENCH_RECORDS) in Parquet and CSV.

    Targets: peak memory ≤ 2 GB and wall time ≤ 3× the bare pyarrow + numpy baseline, measured in the same run.
    GEOPROM3E_BENCH_FORMATS=parquet,csv picks the formats; GEOPROM3E_BENCH_DIR keeps the data between runs.
    """
    from tests.bench.benchutil import write_results

    n = int(os.environ.get("GEOPROM3E_BENCH_RECORDS", "100000000"))
    formats = os.environ.get("GEOPROM3E_BENCH_FORMATS", "parquet,csv").split(",")
    folder = Path(os.environ.get("GEOPROM3E_BENCH_DIR") or tmp_path_factory.mktemp("scale"))
    folder.mkdir(parents=True, exist_ok=True)
    todo = [f for f in formats if not (folder / f"obs_{n}.{f}").exists()]
    paths = {f: folder / f"obs_{n}.{f}" for f in formats}
    if todo:
        _write_scale_data(n, folder, todo)
    results = {}
    for fmt, path in paths.items():
        ours = _scale_child("ours", str(path))
        base = _scale_child("baseline", str(path))
        assert ours["records"] == base["records"] == n
        assert ours["kept"] == base["kept"] and ours["cells_with_data"] == base["cells_with_data"]
        assert ours["richness_sum"] == base["richness_sum"]
        assert ours["shannon_sum"] == pytest.approx(base["shannon_sum"], rel=1e-6)
        assert ours["dropped"]["absence (occurrenceStatus ABSENT)"] > 0
        results[fmt] = {
            "records": n, "bytes": path.stat().st_size, "outputs_written": ours["files"],
            "ours_wall_s": round(ours["wall_s"], 2), "ours_peak_rss_mb": round(ours["peak_rss_mb"]),
            "ours_records_per_s": round(n / ours["wall_s"]),
            "baseline_wall_s": round(base["wall_s"], 2), "baseline_peak_rss_mb": round(base["peak_rss_mb"]),
            "ratio_vs_baseline": round(ours["wall_s"] / base["wall_s"], 2),
        }
        print(fmt, results[fmt], file=sys.stderr, flush=True)
    out = write_results(f"diversity_scale_{n}", {
        "grid": GRID, "records": n,
        "baseline": "bare pyarrow + numpy: streamed batches, absences dropped, per-batch np.unique of cell<<32|code, "
                    "merge, Shannon/richness, scipy gaussian_filter (no output files)",
        "ours": "write_diversity_map (read, filter, count drops, aggregate, smooth, write GeoTIFF/QML/NetCDF/PNGs/"
                "manifest; no input checksums)",
        "targets": {"peak_rss_mb": 2048, "ratio_vs_baseline": 3.0},
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "results": results,
    })
    print("wrote", out, file=sys.stderr)
    for fmt, r in results.items():
        assert r["ours_peak_rss_mb"] <= 2048, (fmt, r)
        assert r["ratio_vs_baseline"] <= 3.0, (fmt, r)
