"""Synthetic, seeded observation tables for tests and benchmarks (iNaturalist-, GBIF- and Parquet-shaped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa


def synthetic_records(
    n: int,
    *,
    n_species: int = 2000,
    bbox: tuple[float, float, float, float] = (-125.0, 24.5, -66.5, 49.5),
    n_hotspots: int = 400,
    on_land: bool = True,
    seed: int = 0,
) -> pa.Table:
    """``n`` records clustered around random hotspots in ``bbox``; species drawn Zipf-like per hotspot.

    ``on_land`` puts the hotspots on contiguous-US land cells (a realistic share of records inside the mask).

    Columns: ``latitude``, ``longitude`` (float64), ``scientific_name`` (dictionary-encoded string),
    ``individual_count`` (int32), ``observed_on`` (YYYY-MM-DD string).
    """
    rng = np.random.default_rng(seed)
    w, s, e, nn = bbox
    if on_land:  # hotspots at land cells of usa-250x500 inside bbox (records still spill into sea and Canada)
        from geoprom3e.grid import get_grid

        g = get_grid("usa-250x500")
        lat_c, lon_c = g.cell_centers()
        land = g.mask() & (lat_c > s) & (lat_c < nn) & (lon_c > w) & (lon_c < e)
        pick = rng.choice(np.flatnonzero(land.ravel()), n_hotspots)
        hot_lat, hot_lon = lat_c.ravel()[pick], lon_c.ravel()[pick]
    else:
        hot_lat = rng.uniform(s, nn, n_hotspots)
        hot_lon = rng.uniform(w, e, n_hotspots)
    which = rng.integers(0, n_hotspots, n)
    lat = np.clip(hot_lat[which] + rng.normal(0, 0.4, n), s, nn - 1e-9)
    lon = np.clip(hot_lon[which] + rng.normal(0, 0.5, n), w, e - 1e-9)
    ranks = rng.zipf(1.3, n) % n_species
    species = ((ranks + which * 7) % n_species).astype(np.int32)
    names = pa.array([f"Genus{i // 10:04d} species{i:05d}" for i in range(n_species)])
    days = pa.array(rng.integers(14610, 14610 + 365 * 12, n).astype(np.int32), pa.date32()).cast(pa.string())
    return pa.table({
        "latitude": lat,
        "longitude": lon,
        "scientific_name": pa.DictionaryArray.from_arrays(pa.array(species), names),
        "individual_count": rng.integers(1, 20, n).astype(np.int32),
        "observed_on": days,
    })


def write_records(table: pa.Table, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``table`` as ``csv``, ``csv.gz``, ``tsv`` (Darwin Core-like names) or ``parquet`` (from the suffix)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    fmt = fmt or ("csv.gz" if path.name.endswith(".csv.gz") else path.suffix.lstrip(".").lower())
    if fmt == "parquet":
        pq.write_table(table, path)
        return path
    plain = table.set_column(2, "scientific_name", table.column("scientific_name").cast(pa.string()))
    if fmt == "tsv" or fmt == "txt":
        plain = plain.rename_columns(["decimalLatitude", "decimalLongitude", "species", "individualCount", "eventDate"])
        with open(path, "wb") as fh:  # GBIF-style: unquoted header and values
            fh.write(("\t".join(plain.column_names) + "\n").encode())
            pacsv.write_csv(plain, fh, pacsv.WriteOptions(delimiter="\t", quoting_style="none", include_header=False))
        return path
    if fmt == "csv.gz":
        with pa.CompressedOutputStream(str(path), "gzip") as out:
            pacsv.write_csv(plain, out)
        return path
    pacsv.write_csv(plain, path, pacsv.WriteOptions(quoting_style="needed"))
    return path
